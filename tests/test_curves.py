"""experiments/curves.py: learning curves from metrics.jsonl records."""

from experiments import curves


def test_plot_learning_curves(tmp_path):
  history = [{'step': s, 'train/loss': 2.0 / s} for s in range(1, 11)]
  history += [{'step': 5, 'eval/loss': 0.5, 'eval/accuracy': 0.8},
              {'step': 10, 'eval/loss': 0.3, 'eval/accuracy': 0.9, 'eval/bleu': 20.0},
              {'step': 10, 'test/accuracy': 0.85},
              {'step': 10, 'test/accuracy': 0.85, 'checkpoint': 'latest'}]  # from `run.py eval`
  assert curves._series(history, 'eval/accuracy') == ([5, 10], [0.8, 0.9])
  assert curves._series(history, 'test/accuracy') == ([10], [0.85])
  path = curves.plot_learning_curves(history, str(tmp_path / 'c.png'), best_metric='eval/accuracy')
  assert open(path, 'rb').read(4) == b'\x89PNG'
