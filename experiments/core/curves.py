"""Learning curves from metrics.jsonl: losses (train and eval) and eval metrics vs step."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
  points = [
      (h['step'], h[key])
      for h in history
      if key in h and isinstance(h[key], (int, float)) and 'checkpoint' not in h
  ]
  return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curves(
    history: list[dict[str, Any]], path: str, best_metric: str | None = None
) -> str:
  """Writes the `learning_curves_figure` PNG to `path`."""
  fig = learning_curves_figure(history, best_metric)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def learning_curves_figure(
    history: list[dict[str, Any]], best_metric: str | None = None
) -> plt.Figure:
  """Panel 0: train/loss and eval/loss (log scale); then one panel per other eval/* metric
  (the model-selection metric first), each on its own scale. eval/padding is left out."""
  keys = sorted({k for h in history for k in h})
  eval_keys = [
      k
      for k in keys
      if k.startswith('eval/') and k not in ('eval/loss', 'eval/padding') and series(history, k)[0]
  ]
  if best_metric in eval_keys:  # the model-selection metric first
    eval_keys.remove(best_metric)
    eval_keys.insert(0, best_metric)
  panels = 1 + len(eval_keys)
  cols = min(panels, 3)
  rows = -(-panels // cols)
  fig, axes = plt.subplots(
      rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, layout='constrained'
  )
  axes = axes.ravel()
  for key in ('train/loss', 'eval/loss'):
    steps, values = series(history, key)
    if steps:
      axes[0].plot(steps, values, label=key, marker='.' if key.startswith('eval') else None)
  axes[0].set_yscale('log')
  axes[0].set_title('loss')
  if axes[0].get_legend_handles_labels()[0]:
    axes[0].legend()
  for ax, key in zip(axes[1:], eval_keys):
    steps, values = series(history, key)
    ax.plot(steps, values, marker='.')
    ax.set_title(key + ('  (selects best)' if key == best_metric else ''))
  for ax in axes[:panels]:
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  for ax in axes[panels:]:
    ax.set_visible(False)
  return fig
