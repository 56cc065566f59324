"""Plots of an ablation report (experiments/analysis/ablation_report.py).

axis_plot        the objective against one axis: one dot per seed, the mean ± 95% t interval,
                 numeric axes sorted by value (log scale when they span >= 8x), categorical
                 axes in the table's order; the paper's rows at their own x values as a separate
                 series, in the same panel when the metric and its range match ours, else in a
                 second panel with its own y label (no twin y-axis)
curves_plot      learning curves: eval/loss (logged often) and the objective against the step,
                 one line per seed, one colour per variant
attention_grid   attention of the same input per variant, side by side (seed 0 of each, in the
                 table's order), one colour scale over all panels and one colour bar: MNIST
                 [CLS]/mean rollout over the patches of the first test image; translation
                 cross-attention (last decoder layer, mean over heads) on the first test
                 sentence, teacher-forced with its reference so that every panel has the same
                 axes (attention_view.py; a run carried without checkpoints brings its view)

The ordering, scales and colour limits are pure functions (axis_series, paper_positions,
x_scale, shared_limits) and the figures are returned by axis_figure / curves_figure /
grid_figure before they are saved, so that tests can read back what is drawn.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.analysis import stats
from experiments.core import metric_logging

BASE = 'base'  # the base variant's label (experiments.sweep.variants.BASE)
LOG_SPAN = 8  # a positive numeric axis spanning this factor or more is drawn on a log scale
CURVE_METRICS = ('eval/loss',)  # drawn beside the objective when logged (cheap, frequent)
_PAPER_METRICS = {'bleu': ('bleu',), 'ppl': ('ppl', 'perplexity')}


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _is_number(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class AxisSeries:
  """What axis_figure draws for our runs, point by point in plotted order."""

  numeric: bool
  values: list[Any]  # the axis value of each point (its label on a categorical axis)
  labels: list[str]  # variant names
  xs: list[float]  # x positions: the values (numeric) or 0, 1, ... (categorical, table order)
  runs: list[list[float]]  # the objective of each seed
  means: list[float]
  lows: list[float]  # 95% t interval of the mean (nan with one run)
  highs: list[float]


def axis_series(points: Sequence[tuple[Any, str, Sequence[float]]]) -> AxisSeries:
  """`points`: (axis value, variant name, objective per seed) in the table's order. A numeric
  axis is sorted by value; a categorical one keeps the given order."""
  numeric = bool(points) and all(_is_number(x) for x, _, _ in points)
  ordered = sorted(points, key=lambda p: p[0]) if numeric else list(points)
  intervals = [stats.mean_interval(v) for _, _, v in ordered]
  return AxisSeries(
      numeric=numeric,
      values=[x for x, _, _ in ordered],
      labels=[name for _, name, _ in ordered],
      xs=[float(x) for x, _, _ in ordered] if numeric else [float(i) for i in range(len(ordered))],
      runs=[[float(v) for v in values] for _, _, values in ordered],
      means=[m for m, _, _ in intervals],
      lows=[lo for _, lo, _ in intervals],
      highs=[hi for _, _, hi in intervals],
  )


def paper_positions(
    series: AxisSeries, paper: Sequence[tuple[Any, float, str]]
) -> list[tuple[float, float, str]]:
  """(x position, value, row name) of the paper's rows, sorted by x: at their own values on a
  numeric axis; on a categorical one at our category of the same value (others are left out)."""
  out = []
  for x, value, name in paper:
    if series.numeric and _is_number(x):
      out.append((float(x), float(value), name))
    elif not series.numeric and x in series.values:
      out.append((series.xs[series.values.index(x)], float(value), name))
  return sorted(out)


def x_scale(xs: Sequence[float]) -> tuple[str, int]:
  """('log', base) for positive values spanning >= LOG_SPAN x (base 2 when all are powers of
  two, as layer, head and width counts are), else ('linear', 0)."""
  if not xs or min(xs) <= 0 or max(xs) / min(xs) < LOG_SPAN:
    return 'linear', 0
  powers_of_two = all(float(math.log2(x)).is_integer() for x in xs)
  return 'log', 2 if powers_of_two else 10


def seed_offsets(count: int, numeric: bool, width: float = 0.24) -> np.ndarray:
  """Horizontal offsets of one point's seed dots: none on a numeric axis (the x is the value),
  evenly spread over `width` on a categorical one."""
  if numeric or count < 2:
    return np.zeros(count)
  return np.linspace(-width / 2, width / 2, count)


def share_panel(
    objective: str, paper_metric: str, ours: Sequence[float], theirs: Sequence[float]
) -> bool:
  """The paper's values go in our panel only if they are the same metric as our objective and
  the two ranges overlap; otherwise a second panel with its own y label."""
  same = objective.rsplit('/', 1)[-1].lower() in _PAPER_METRICS.get(paper_metric.lower(), ())
  return same and min(ours) <= max(theirs) and min(theirs) <= max(ours)


def axis_figure(
    axis: str,
    points: Sequence[tuple[Any, str, Sequence[float]]],
    objective: str,
    paper: Sequence[tuple[Any, float, str]] = (),
    paper_metric: str = '',
):
  """The figure of axis_plot: `points` as for axis_series; `paper`: (axis value, paper value,
  row name) of the paper's rows of this axis; `paper_metric`: 'BLEU' or 'PPL'."""
  plt = _plt()
  series = axis_series(points)
  theirs = paper_positions(series, paper) if len(paper) > 1 else []
  shared = bool(theirs) and share_panel(
      objective, paper_metric, [v for r in series.runs for v in r], [v for _, v, _ in theirs]
  )
  two = bool(theirs) and not shared
  fig, axs = plt.subplots(
      2 if two else 1,
      1,
      figsize=(5.8, 5.6 if two else 3.9),
      sharex=True,
      squeeze=False,
      height_ratios=[3, 2] if two else [1],
  )
  ax = axs[0, 0]
  for i, (x, runs) in enumerate(zip(series.xs, series.runs)):
    ax.scatter(
        x + seed_offsets(len(runs), series.numeric),
        runs,
        s=10,
        color='tab:blue',
        alpha=0.4,
        label='runs (one dot per seed)' if i == 0 else None,
    )
  means = np.asarray(series.means)
  below = np.nan_to_num(means - np.asarray(series.lows))  # no bar with one run
  above = np.nan_to_num(np.asarray(series.highs) - means)
  ax.errorbar(series.xs, means, yerr=[below, above], fmt='none', ecolor='tab:blue', capsize=3)
  joined = '-' if series.numeric else ''  # categories have no order to draw a line along
  ax.plot(series.xs, means, 'o' + joined, color='tab:blue', label='ours: mean ± 95% t interval')
  ax.set_ylabel(objective)
  n = sorted({len(r) for r in series.runs})
  ax.set_title(
      f'{objective} vs {axis} (n = {n[0] if len(n) == 1 else f"{n[0]}-{n[-1]}"} seeds per point)',
      fontsize=9,
  )
  pax = ax
  if theirs:
    pax = axs[1, 0] if two else ax
    pax.plot(
        [x for x, _, _ in theirs],
        [v for _, v, _ in theirs],
        's--' if series.numeric else 's',
        color='tab:orange',
        label=f'paper {paper_metric} (Vaswani et al. 2017, Table 3)',
    )
    if two:
      pax.set_ylabel(f'paper {paper_metric}')
  if series.numeric and BASE in series.labels:
    ax.axvline(series.xs[series.labels.index(BASE)], color='tab:blue', ls=':', lw=0.8)
  if theirs and series.numeric and any(name == 'base' for _, _, name in theirs):
    base_x = [x for x, _, name in theirs if name == 'base'][0]
    pax.axvline(base_x, color='tab:orange', ls=':', lw=0.8)
  xs_all = sorted(set(series.xs) | {x for x, _, _ in theirs})
  bottom = axs[-1, 0]
  if series.numeric:
    scale, base = x_scale(xs_all)
    if scale == 'log':
      bottom.set_xscale('log', base=base)
    bottom.set_xticks(xs_all, [f'{x:g}' for x in xs_all])
    bottom.minorticks_off()
  else:
    ticks = [
        f'{v} (base)' if name == BASE and v != BASE else str(v)
        for v, name in zip(series.values, series.labels)
    ]
    bottom.set_xticks(series.xs, ticks, rotation=30, ha='right', fontsize=8)
  bottom.set_xlabel(axis + (' (dotted: base)' if series.numeric else ''))
  for a in axs.flat:
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
  fig.tight_layout()
  return fig


def axis_plot(
    axis: str,
    points: Sequence[tuple[Any, str, Sequence[float]]],
    objective: str,
    path: str,
    paper: Sequence[tuple[Any, float, str]] = (),
    paper_metric: str = '',
) -> str:
  """Saves axis_figure to `path`; returns it."""
  fig = axis_figure(axis, points, objective, paper, paper_metric)
  fig.savefig(path, dpi=100)
  _plt().close(fig)
  return path


def curve(history: Sequence[dict[str, Any]], metric: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `metric` in a run's metrics history, sorted by step (the lines of
  `run.py eval`, which hold 'checkpoint', are skipped)."""
  points = sorted(
      (int(h['step']), float(h[metric]))
      for h in history
      if _is_number(h.get(metric)) and 'step' in h and 'checkpoint' not in h
  )
  return [s for s, _ in points], [v for _, v in points]


def curves_figure(axis: str, runs: dict[str, list[str]], objective: str):
  """The figure of curves_plot: one panel per metric with points (eval/loss, the objective)."""
  plt = _plt()
  histories = {
      label: [metric_logging.read_history(w) for w in workdirs] for label, workdirs in runs.items()
  }
  metrics = [
      m
      for m in dict.fromkeys((*CURVE_METRICS, objective))
      if any(curve(h, m)[0] for hs in histories.values() for h in hs)
  ]
  panels = max(1, len(metrics))
  fig, axs = plt.subplots(1, panels, figsize=(5.2 * panels, 4), squeeze=False)
  colours = plt.get_cmap('tab10')
  for ax, metric in zip(axs.flat, metrics):
    for i, (label, hs) in enumerate(histories.items()):
      drawn = 0
      for h in hs:
        steps, values = curve(h, metric)
        if steps:
          ax.plot(
              steps,
              values,
              color=colours(i % 10),
              lw=1,
              marker='.' if len(steps) <= 30 else None,
              ms=3,
              alpha=0.8,
              label=None if drawn else f'{label} ({len(hs)} run{"" if len(hs) == 1 else "s"})',
          )
          drawn += 1
    ax.set_xlabel('training step')
    ax.set_ylabel(metric)
    ax.set_title(f'{metric} per {axis} variant (one line per seed)', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if not metrics:
    axs[0, 0].text(0.5, 0.5, 'no evaluations logged', ha='center', va='center')
  fig.tight_layout()
  return fig


def curves_plot(axis: str, runs: dict[str, list[str]], objective: str, path: str) -> str:
  """`runs`: variant label -> trial workdirs (seeds), in the table's order. Saves
  curves_figure to `path`; returns it."""
  fig = curves_figure(axis, runs, objective)
  fig.savefig(path, dpi=100)
  _plt().close(fig)
  return path


def shared_limits(arrays: Sequence[np.ndarray]) -> tuple[float, float]:
  """(vmin, vmax) over all panels: one colour scale for the whole grid."""
  return (
      float(min(np.min(a) for a in arrays)),
      float(max(np.max(a) for a in arrays)),
  )


def grid_figure(data: dict[str, tuple[str, Any]]):
  """The figure of attention_grid: `data`, variant label -> ('image', (image [h, w], heat
  [h, w], note)) or ('text', (weights [t, s], source pieces, target pieces)), in panel order."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  plt = _plt()
  kind = next(iter(data.values()))[0]
  heats = [value[1] if k == 'image' else value[0] for k, value in data.values()]
  vmin, vmax = shared_limits(heats)
  cmap = 'inferno' if kind == 'image' else 'viridis'
  cols = min(4, len(data))
  rows = math.ceil(len(data) / cols)
  size = (2.4, 2.6) if kind == 'image' else (4.2, 4.0)
  fig, axes = plt.subplots(
      rows, cols, figsize=(size[0] * cols + 1, size[1] * rows), squeeze=False, layout='constrained'
  )
  for ax in axes.flat:
    ax.axis('off')
  for ax, (label, (kind, value)) in zip(axes.flat, data.items()):
    ax.axis('on')
    if kind == 'image':
      image, heat, note = value
      ax.imshow(image, cmap='gray', vmin=0, vmax=1, interpolation='nearest')
      ax.imshow(heat, cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.55, interpolation='nearest')
      ax.set_title(f'{label}\n{note}', fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    else:
      weights, src, tgt = value
      ax.imshow(weights, cmap=cmap, vmin=vmin, vmax=vmax, aspect='auto')
      ax.set_xticks(range(len(src)), src, rotation=90, fontsize=6)
      ax.set_yticks(range(len(tgt)), tgt, fontsize=6)
      ax.set_title(label, fontsize=8)
  scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(vmin, vmax), cmap)
  fig.colorbar(
      scale,
      ax=axes.ravel().tolist(),
      shrink=0.8,
      label='rollout weight' if kind == 'image' else 'attention weight',
  )
  what = (
      'attention rollout over the patches\nof test image #0'
      if kind == 'image'
      else 'cross-attention (last decoder layer, mean of heads) on test sentence #0 + reference'
  )
  fig.suptitle(f'{what},\none panel per variant (seed 0 of each), one colour scale', fontsize=8)
  return fig


def attention_grid(panels: dict[str, str], path: str) -> str | None:
  """`panels`: variant label -> a trial workdir, in panel order. One panel per variant of the
  same input (attention_view.py: from the run's best checkpoint, or the view a record carried);
  returns the path, or None for tasks without such a view. A run with neither raises
  checkpointing.CheckpointNotFoundError."""
  from experiments.analysis import attention_view  # pylint: disable=g-import-not-at-top

  data, inputs = {}, {}
  for label, workdir in panels.items():
    found = attention_view.view(workdir, inputs)
    if found is not None:
      data[label] = found
  if not data:
    return None
  fig = grid_figure(data)
  fig.savefig(path, dpi=100)
  _plt().close(fig)
  return path
