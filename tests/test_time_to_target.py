"""Steps and wall time to a common target of the objective (experiments/analysis/time_to_target.py):
the first evaluation at or past the weakest run's best, against values worked out by hand."""

from __future__ import annotations

import json

from experiments.analysis import time_to_target


def _run(tmp_path, name: str, history: list[dict], steps_per_s: float) -> dict:
  workdir = tmp_path / name
  workdir.mkdir()
  with open(workdir / 'metrics.jsonl', 'w') as f:
    f.writelines(json.dumps(h) + '\n' for h in history)
  return {'workdir': str(workdir), 'steps_per_s': steps_per_s}


def test_first_step_skips_lines_of_run_py_eval_and_other_metrics():
  history = [
      {'step': 100, 'train/loss': 3.0},
      {'step': 100, 'eval/bleu': 10.0},
      {'step': 200, 'checkpoint': 'best', 'eval/bleu': 30.0},  # a later `run.py eval` line
      {'step': 200, 'eval/bleu': 20.0},
      {'step': 300, 'eval/bleu': 25.0},
  ]
  assert time_to_target.first_step(history, 'eval/bleu', 20.0, maximize=True) == 200
  assert time_to_target.first_step(history, 'eval/bleu', 25.5, maximize=True) is None
  assert time_to_target.first_step(history, 'eval/bleu', 12.0, maximize=False) == 100
  losses = [{'step': 50, 'eval/perplexity': 40.0}, {'step': 100, 'eval/perplexity': 30.0}]
  assert time_to_target.first_step(losses, 'eval/perplexity', 35.0, maximize=False) == 100


def test_section_reports_steps_and_wall_time_to_the_weakest_best(tmp_path):
  curve = lambda *bleus: [{'step': 100 * (i + 1), 'eval/bleu': b} for i, b in enumerate(bleus)]
  groups = {
      'base': {  # best 30 and 28
          'objective': [30.0, 28.0],
          'rows': [
              _run(tmp_path, 'b0', curve(10, 22, 30), 2.0),
              _run(tmp_path, 'b1', curve(12, 24, 28), 4.0),
          ],
      },
      'architecture=rnn': {  # best 21: the target, reached by every run
          'objective': [21.0, 25.0],
          'rows': [
              _run(tmp_path, 'r0', curve(5, 15, 21), 1.0),
              _run(tmp_path, 'r1', curve(21.5, 23, 25), 0.5),
          ],
      },
  }
  lines = time_to_target.section(groups, 'eval/bleu', maximize=True)
  assert '## Time to `eval/bleu` = 21' in lines
  rows = {line.split(' | ')[0].lstrip('| '): line for line in lines if line.startswith('| ')}
  # base: steps 200 and 200 (22 >= 21, 24 >= 21); wall 200/2 = 100 s and 200/4 = 50 s.
  assert rows['base'] == '| base | 2 | 200 ± 0 | 75 ± 35.4 |'
  # rnn: steps 300 and 100; wall 300/1 = 300 s and 100/0.5 = 200 s: mean 250, std 70.7.
  assert rows['architecture=rnn'] == '| architecture=rnn | 2 | 200 ± 141 | 250 ± 70.7 |'
  assert list(rows)[:3] == ['variant', 'base', 'architecture=rnn']  # the groups' order
  assert time_to_target.section({'base': groups['base']}, 'eval/bleu', maximize=True) == []
