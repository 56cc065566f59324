"""Learning curves from metrics.jsonl: losses (train and eval) and eval metrics vs step."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
  points = [(h['step'], h[key]) for h in history
            if key in h and isinstance(h[key], (int, float)) and 'checkpoint' not in h]
  return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curves(history: list[dict[str, Any]], path: str,
                         best_metric: str | None = None) -> str:
  """Left: train/loss and eval/loss; right: the other eval/* metrics. Writes a PNG."""
  keys = sorted({k for h in history for k in h})
  eval_keys = [k for k in keys if k.startswith('eval/') and k != 'eval/loss']
  if best_metric in eval_keys:  # the model-selection metric first
    eval_keys.remove(best_metric)
    eval_keys.insert(0, best_metric)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for key in ('train/loss', 'eval/loss'):
    steps, values = _series(history, key)
    if steps:
      axes[0].plot(steps, values, label=key, marker='.' if key.startswith('eval') else None)
  axes[0].set_xlabel('step')
  axes[0].set_ylabel('loss')
  axes[0].set_yscale('log')
  axes[0].set_title('loss')
  for key in eval_keys:
    steps, values = _series(history, key)
    if steps:
      axes[1].plot(steps, values, label=key, marker='.')
  axes[1].set_xlabel('step')
  axes[1].set_title('validation metrics')
  for ax in axes:
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
