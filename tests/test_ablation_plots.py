"""Ablation plots read back from their figures: x sorted by value, log scale for wide numeric
axes, one dot per seed and the mean ± 95% t interval, the paper's rows at their own x values
(same panel only for the same metric and range, never a twin axis), learning curves with one
line per seed, and one colour scale for the attention grid."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.analysis import ablation_plots as ap

_T_975_2 = 4.303  # t table: the 97.5% quantile of Student's t with 2 degrees of freedom


def _line(ax, label: str):
  (line,) = [l for l in ax.get_lines() if l.get_label() == label]
  return line


def _close(fig):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  # Agg: set by ap

  plt.close(fig)


def test_axis_series_sorts_numeric_axes_and_keeps_categorical_order():
  points = [(128, 'base', [1.0]), (64, 'd_model=64', [2.0]), (256, 'd_model=256', [3.0])]
  s = ap.axis_series(points)
  assert s.numeric and s.xs == [64.0, 128.0, 256.0]
  assert s.labels == ['d_model=64', 'base', 'd_model=256'] and s.runs == [[2.0], [1.0], [3.0]]
  points = [
      ('soft', 'base', [1.0]),
      ('local,w=3', 'weighting=local,w=3', [2.0]),
      ('hard', 'x', [0.5]),
  ]
  s = ap.axis_series(points)
  assert not s.numeric and s.xs == [0.0, 1.0, 2.0] and s.values == ['soft', 'local,w=3', 'hard']


def test_x_scale_and_seed_offsets():
  assert ap.x_scale([1, 2, 4, 8]) == ('log', 2)  # 8x, powers of two
  assert ap.x_scale([1, 3, 10]) == ('log', 10)
  assert ap.x_scale([64, 128, 256]) == ('linear', 0)  # 4x
  assert ap.x_scale([0.0, 0.1, 0.2]) == ('linear', 0)  # a zero: no log
  assert ap.seed_offsets(3, numeric=True).tolist() == [0.0, 0.0, 0.0]
  off = ap.seed_offsets(3, numeric=False)
  assert off.tolist() == pytest.approx([-0.12, 0.0, 0.12])


def test_axis_figure_draws_sorted_means_with_t_intervals_and_the_paper_in_its_own_panel():
  seeds = {1: [15.0, 16.0, 14.8], 2: [17.2, 17.0, 17.5], 4: [13.0, 13.6, 13.3]}
  points = [(2, 'base', seeds[2]), (4, 'N=4', seeds[4]), (1, 'N=1', seeds[1])]  # table order
  paper = [(6, 25.8, 'base'), (2, 23.7, 'N=2'), (8, 25.5, 'N=8'), (4, 25.3, 'N=4')]
  fig = ap.axis_figure('N', points, 'eval/bleu', paper, 'BLEU')
  ours_ax, paper_ax = fig.axes  # two panels: BLEU 17 vs 25 do not overlap; no twin axis
  assert ours_ax.get_position().y0 > paper_ax.get_position().y1 - 1e-6  # stacked, not twinned
  mean_line = _line(ours_ax, 'ours: mean ± 95% t interval')
  assert list(mean_line.get_xdata()) == [1, 2, 4]
  assert list(mean_line.get_ydata()) == pytest.approx([np.mean(seeds[x]) for x in (1, 2, 4)])
  # error bar of x = 4: mean ± t_{0.975, 2} s / sqrt(3)
  bars = [c for c in ours_ax.collections if c.__class__.__name__ == 'LineCollection']
  segments = [s for s in bars[0].get_segments() if s[0][0] == 4]
  (segment,) = segments
  half = _T_975_2 * np.std(seeds[4], ddof=1) / math.sqrt(3)
  assert sorted([segment[0][1], segment[1][1]]) == pytest.approx(
      [np.mean(seeds[4]) - half, np.mean(seeds[4]) + half], abs=1e-3
  )
  # one dot per seed, at the value itself on a numeric axis
  dots = [c for c in ours_ax.collections if c.__class__.__name__ == 'PathCollection']
  assert sum(len(c.get_offsets()) for c in dots) == 9
  assert sorted({float(x) for c in dots for x, _ in c.get_offsets()}) == [1.0, 2.0, 4.0]
  # the paper's rows at their own N, sorted, with its own y label
  paper_line = _line(paper_ax, 'paper BLEU (Vaswani et al. 2017, Table 3)')
  assert list(paper_line.get_xdata()) == [2, 4, 6, 8]
  assert list(paper_line.get_ydata()) == [23.7, 25.3, 25.8, 25.5]
  assert paper_ax.get_ylabel() == 'paper BLEU'
  assert paper_ax.get_xscale() == 'log'  # 1 to 8: 8x
  _close(fig)


def test_axis_figure_shares_the_panel_for_the_same_metric_and_range():
  points = [(8, 'base', [25.0, 25.4]), (16, 'heads=16', [25.6, 25.9])]
  paper = [(8, 25.8, 'base'), (16, 25.8, 'heads=16'), (32, 25.4, 'heads=32')]
  fig = ap.axis_figure('heads', points, 'eval/bleu', paper, 'BLEU')
  (ax,) = fig.axes
  assert list(_line(ax, 'paper BLEU (Vaswani et al. 2017, Table 3)').get_xdata()) == [8, 16, 32]
  _close(fig)
  fig = ap.axis_figure('heads', points, 'eval/accuracy', paper, 'BLEU')  # other metric
  assert len(fig.axes) == 2
  _close(fig)


def test_axis_figure_categorical_keeps_table_order_and_jitters_seeds():
  points = [('sinusoidal', 'base', [0.9, 0.91]), ('rope', 'positional=rope', [0.8, 0.82])]
  points.append(('learned', 'positional=learned', [0.85, 0.86]))
  paper = [('sinusoidal', 4.92, 'base'), ('learned', 4.92, 'positional=learned')]
  fig = ap.axis_figure('positional', points, 'eval/accuracy', paper, 'PPL')
  ours_ax, paper_ax = fig.axes
  assert list(_line(ours_ax, 'ours: mean ± 95% t interval').get_xdata()) == [0, 1, 2]
  assert [t.get_text() for t in paper_ax.get_xticklabels()] == [
      'sinusoidal (base)',
      'rope',
      'learned',
  ]
  assert list(_line(paper_ax, 'paper PPL (Vaswani et al. 2017, Table 3)').get_xdata()) == [0, 2]
  dots = [c for c in ours_ax.collections if c.__class__.__name__ == 'PathCollection']
  assert [float(x) for x, _ in dots[1].get_offsets()] == pytest.approx([0.88, 1.12])
  _close(fig)


def _write_run(path, lines):
  path.mkdir()
  (path / 'metrics.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
  return str(path)


def test_curves_figure_draws_each_seed_sorted_by_step(tmp_path):
  runs = {}
  for variant, offset, seeds in (('base', 0.0, 2), ('heads=1', 0.5, 2), ('heads=2', 1.0, 1)):
    runs[variant] = []
    for seed in range(seeds):
      steps = list(range(20, 260, 20))[::-1]  # 12 evaluations, written out of order
      lines = [{'step': s, 'eval/loss': 3 - s / 100 + offset + seed * 0.01} for s in steps]
      lines += [{'step': 240, 'eval/bleu': 10.0 + seed}, {'step': 120, 'eval/bleu': 5.0}]
      lines += [{'step': 240, 'checkpoint': 'best', 'eval/loss': 0.0}]  # `run.py eval`: skipped
      runs[variant].append(_write_run(tmp_path / f'{variant}_{seed}', lines))
  fig = ap.curves_figure('heads', runs, 'eval/bleu')
  loss_ax, bleu_ax = fig.axes
  assert (loss_ax.get_ylabel(), bleu_ax.get_ylabel()) == ('eval/loss', 'eval/bleu')
  lines = loss_ax.get_lines()
  assert len(lines) == 5  # one per seed
  for line in lines:
    assert list(line.get_xdata()) == list(range(20, 260, 20))
  assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
  assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
      'base (2 runs)',
      'heads=1 (2 runs)',
      'heads=2 (1 run)',
  ]
  assert list(bleu_ax.get_lines()[0].get_xdata()) == [120, 240]
  _close(fig)


def test_curves_figure_without_eval_loss_draws_the_objective(tmp_path):
  run = _write_run(tmp_path / 'r', [{'step': 10, 'eval/accuracy': 0.5}])
  fig = ap.curves_figure('heads', {'base': [run, str(tmp_path / 'missing')]}, 'eval/accuracy')
  (ax,) = fig.axes
  assert ax.get_ylabel() == 'eval/accuracy'
  _close(fig)


def test_attention_grid_has_one_colour_scale_and_one_colour_bar():
  rng = np.random.default_rng(0)
  data = {
      name: ('text', (scale * rng.uniform(size=(3, 4)), list('abcd'), list('xyz')))
      for name, scale in (('base', 1.0), ('heads=1', 0.2), ('heads=4', 0.5))
  }
  assert ap.shared_limits([d[1][0] for d in data.values()]) == (
      pytest.approx(min(d[1][0].min() for d in data.values())),
      pytest.approx(max(d[1][0].max() for d in data.values())),
  )
  vmin, vmax = ap.shared_limits([d[1][0] for d in data.values()])
  fig = ap.grid_figure(data)
  images = [im for ax in fig.axes for im in ax.get_images()]
  assert len(images) == 3 and all(im.get_clim() == (vmin, vmax) for im in images)
  titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
  assert titles == ['base', 'heads=1', 'heads=4']  # the given (table) order
  bars = [ax for ax in fig.axes if ax.get_ylabel() == 'attention weight']
  assert len(bars) == 1 and len(fig.axes) == 4
  _close(fig)
