"""Plots of an ablation report (experiments/analysis/ablation_report.py).

axis_plot        the objective (mean +- std over seeds) against one axis's values
curves_plot      learning curves of the objective, the mean over seeds per variant
attention_grid   attention of the same input per variant, side by side: MNIST [CLS]/mean
                 rollout over the patches of the first test image; translation cross-attention
                 (last decoder layer, mean over heads) on the first test sentence, teacher-forced
                 with its reference so that every panel has the same axes
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.core import metric_logging


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def axis_plot(
    axis: str,
    points: Sequence[tuple[Any, str, Sequence[float]]],
    objective: str,
    path: str,
    paper: Sequence[tuple[Any, float]] = (),
    paper_label: str = '',
) -> str:
  """`points`: (x value, label, objective values over seeds) per variant, in order. Numeric x
  values get a numeric (log2 for powers of two) axis; `paper`: (x, value) on a twin axis."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _, _ in points)
  xs = [x for x, _, _ in points] if numeric else list(range(len(points)))
  means = [float(np.mean(v)) for _, _, v in points]
  stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for _, _, v in points]
  for x, (_, _, values) in zip(xs, points):
    ax.scatter([x] * len(values), values, color='tab:blue', alpha=0.35, s=12)
  ax.errorbar(xs, means, yerr=stds, color='tab:blue', marker='o', capsize=3, label='ours')
  if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) >= 8:
    ax.set_xscale('log', base=2)
  if not numeric:
    ax.set_xticks(xs, [label for _, label, _ in points], rotation=30, ha='right', fontsize=8)
  ax.set_xlabel(axis)
  ax.set_ylabel(objective)
  ax.grid(alpha=0.3)
  if paper:
    twin = ax.twinx()
    px = [x if numeric else xs[[p[0] for p in points].index(x)] for x, _ in paper]
    twin.plot(px, [v for _, v in paper], 's--', color='tab:orange', label=paper_label)
    twin.set_ylabel(paper_label, color='tab:orange')
  ax.set_title(f'{objective} vs {axis} (mean ± std over seeds, dots: runs)', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def curves_plot(axis: str, runs: dict[str, list[str]], objective: str, path: str) -> str:
  """`runs`: variant label -> trial workdirs (seeds); the mean curve of each variant."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, workdirs in runs.items():
    curves = []
    for w in workdirs:
      history = metric_logging.read_history(w) if os.path.isdir(w) else []
      curves.append(
          {h['step']: h[objective] for h in history if objective in h and 'checkpoint' not in h}
      )
    steps = sorted(set().union(*curves)) if curves else []
    if not steps:
      continue
    mean = [np.mean([c[s] for c in curves if s in c]) for s in steps]
    ax.plot(steps, mean, marker='.', label=f'{label} ({len(workdirs)} runs)')
  ax.set_xlabel('training step')
  ax.set_ylabel(objective)
  ax.set_title(f'learning curves per {axis} variant (mean over seeds)', fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _classification_attention(
    restored, inputs: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, str]:
  """(image [h, w], heat map [h, w] on the pixel grid, title) of the first test image.
  `inputs` caches that image per dataset config: the variants share it, loaded once."""
  from experiments.classification import plots  # pylint: disable=g-import-not-at-top

  task = restored.task
  key = json.dumps(restored.config.data.to_dict(), sort_keys=True)
  if key not in inputs:
    inputs[key] = {k: v[:1] for k, v in task.splits['test'].items()}
  batch = inputs[key]
  logits, state = restored.trainer.apply(restored.state.params, batch, mutable=['intermediates'])
  cfg = task.model_config
  image = batch['image'][0].mean(axis=-1)
  heat = plots.cls_patch_attention(
      plots.attention_weights(state['intermediates']), cfg.patch_grid, cfg.pooling == 'cls'
  )[0]
  heat = plots.patch_heat(heat, cfg.patch_size, image.shape)
  pred = task.class_names[int(np.asarray(logits)[0].argmax())]
  return image, heat, f'pred {pred}'


def _translation_attention(restored) -> tuple[np.ndarray, list[str], list[str]]:
  """(weights [t, s] mean over heads, source pieces, target pieces) of the first test
  sentence, teacher-forced with its reference."""
  task = restored.task
  split = task.text(task.test_splits[0])
  tok = task.tokenizer
  src = tok.encode_source([split.sources[0]])[0]
  tgt = tok.encode_target([split.targets[0]])[0]
  translator = task.translator(restored.trainer.model, restored.trainer.mesh)
  weights = translator.cross_attention(restored.state.params, src, tgt)
  return weights.mean(axis=0), tok.source_pieces(src), tok.target_pieces(tgt)


def attention_grid(panels: dict[str, str], path: str) -> str | None:
  """`panels`: variant label -> a trial workdir (its best checkpoint is restored). One panel per
  variant of the same input; returns the path, or None for tasks without such a view."""
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  plt = _plt()
  data, inputs = {}, {}
  for label, workdir in panels.items():
    restored = loop.restore_for_inference(workdir, 'best')
    if restored.config.task == 'classification':
      data[label] = ('image', _classification_attention(restored, inputs))
    elif restored.config.task == 'translation':
      data[label] = ('text', _translation_attention(restored))
  if not data:
    return None
  cols = min(4, len(data))
  rows = math.ceil(len(data) / cols)
  kind = next(iter(data.values()))[0]
  size = (2.4, 2.6) if kind == 'image' else (4.2, 4.0)
  fig, axes = plt.subplots(
      rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, layout='constrained'
  )
  for ax in axes.flat:
    ax.axis('off')
  for ax, (label, (kind, value)) in zip(axes.flat, data.items()):
    ax.axis('on')
    if kind == 'image':
      image, heat, note = value
      ax.imshow(image, cmap='gray', vmin=0, vmax=1, interpolation='nearest')
      ax.imshow(heat, cmap='inferno', alpha=0.55, interpolation='nearest')
      ax.set_title(f'{label}\n{note}', fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    else:
      weights, src, tgt = value
      ax.imshow(weights, cmap='viridis', vmin=0, aspect='auto')
      ax.set_xticks(range(len(src)), src, rotation=90, fontsize=6)
      ax.set_yticks(range(len(tgt)), tgt, fontsize=6)
      ax.set_title(label, fontsize=8)
  what = (
      'attention rollout over the patches\nof test image #0'
      if kind == 'image'
      else 'cross-attention (last decoder layer, mean of heads) on test sentence #0 + reference'
  )
  fig.suptitle(f'{what},\none panel per variant (the first run of each)', fontsize=8)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
