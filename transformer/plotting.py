"""Attention weights as heatmaps (interpretability is a feature, not a debug hack)."""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import numpy as np


def plot_attention(
    weights,
    x_tokens: Sequence[str],
    y_tokens: Sequence[str],
    path: str,
    *,
    title: Optional[str] = None,
    head_titles: Optional[Sequence[str]] = None,
) -> str:
  """Writes a heatmap PNG of attention weights and returns `path`.

  weights: `[q_len, k_len]` (one map) or `[heads, q_len, k_len]` (a grid, one panel per
  head). Keys (`x_tokens`, e.g. source words) run along the x axis, queries (`y_tokens`,
  e.g. target words) along the y axis: row i shows where query i looked.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  w = np.asarray(weights, dtype=np.float32)
  if w.ndim == 2:
    w = w[None]
  if w.ndim != 3:
    raise ValueError(f"plot_attention: weights must be [q, k] or [heads, q, k], got {w.shape}.")
  heads, q_len, k_len = w.shape
  if len(x_tokens) != k_len or len(y_tokens) != q_len:
    raise ValueError(
        f"plot_attention: {len(y_tokens)} y tokens and {len(x_tokens)} x tokens do not "
        f"match weights of shape [q_len={q_len}, k_len={k_len}]."
    )
  cols = min(heads, 4)
  rows = math.ceil(heads / cols)
  cell = 0.35
  fig_w = max(4.0, cols * (k_len * cell + 1.5))
  fig_h = max(3.0, rows * (q_len * cell + 1.2))
  fig, axes = plt.subplots(rows, cols, figsize=(fig_w, fig_h), squeeze=False)
  image = None
  for h in range(rows * cols):
    ax = axes[h // cols][h % cols]
    if h >= heads:
      ax.axis("off")
      continue
    image = ax.imshow(w[h], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(k_len))
    ax.set_xticklabels(list(x_tokens), rotation=90, fontsize=8)
    ax.set_yticks(range(q_len))
    ax.set_yticklabels(list(y_tokens), fontsize=8)
    if head_titles is not None:
      ax.set_title(head_titles[h], fontsize=9)
    elif heads > 1:
      ax.set_title(f"head {h}", fontsize=9)
  if title:
    fig.suptitle(title)
  fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path
