"""experiments/core/curves.py: learning curves from metrics.jsonl records."""

from experiments.core import curves


def test_plot_learning_curves(tmp_path):
  history = [{'step': s, 'train/loss': 2.0 / s} for s in range(1, 11)]
  history += [
      {'step': 5, 'eval/loss': 0.5, 'eval/accuracy': 0.8},
      {'step': 10, 'eval/loss': 0.3, 'eval/accuracy': 0.9, 'eval/bleu': 20.0},
      {'step': 10, 'test/accuracy': 0.85},
      {'step': 10, 'test/accuracy': 0.85, 'checkpoint': 'latest'},
  ]  # from `run.py eval`
  assert curves.series(history, 'eval/accuracy') == ([5, 10], [0.8, 0.9])
  assert curves.series(history, 'test/accuracy') == ([10], [0.85])
  path = curves.plot_learning_curves(history, str(tmp_path / 'c.png'), best_metric='eval/accuracy')
  assert open(path, 'rb').read(4) == b'\x89PNG'


def test_one_panel_per_validation_metric_best_first():
  history = [{'step': s, 'train/loss': 2.0 / s} for s in range(1, 11)]
  history += [
      {
          'step': 10,
          'eval/loss': 0.3,
          'eval/padding': 0.2,
          'eval/accuracy': 0.9,
          'eval/bleu': 20.0,
          'eval/perplexity': 4.0,
      }
  ]
  fig = curves.learning_curves_figure(history, best_metric='eval/bleu')
  try:
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ['loss', 'eval/bleu  (selects best)', 'eval/accuracy', 'eval/perplexity']
    loss_labels = fig.axes[0].get_legend_handles_labels()[1]
    assert loss_labels == ['train/loss', 'eval/loss']
    steps, values = fig.axes[1].get_lines()[0].get_data()
    assert list(steps) == [10] and list(values) == [20.0]
  finally:
    curves.plt.close(fig)
