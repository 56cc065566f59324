"""Where the classifier looks: attention rollout of the [CLS] token over image patches.

Attention rollout (Abnar & Zuidema, 2020): with A_l the head-averaged attention of
layer l ([n, n], rows = queries), the residual connection is accounted for by
Â_l = (A_l + I) / 2 (rows renormalised), and R = Â_L ⋯ Â_2 Â_1. Row 0 of R is how
much the [CLS] output draws on each input token; the patch part is shown over the image.
With mean pooling there is no [CLS]: the mean over rows of R is shown instead.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from transformer import stack_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from transformer.classifier import patch_grid  # pylint: disable=g-import-not-at-top,wrong-import-position


def attention_weights(intermediates: Any) -> list[np.ndarray]:
  """The encoder's sown self-attention weights ([b, heads, n, n]) in layer order (unrolled or
  scanned encoder alike, via transformer.stack_layout)."""
  return [
      np.asarray(w, np.float32)
      for w in stack_layout.attention_weights(intermediates, 'encoder', 'self_attention')
  ]


def attention_rollout(weights: list[np.ndarray]) -> np.ndarray:
  """[b, n, n] rollout R = Â_L ⋯ Â_1 from per-layer weights [b, heads, n, n]."""
  rollout = None
  for w in weights:
    a = w.mean(axis=1)  # [b, n, n]
    a = 0.5 * a + 0.5 * np.eye(a.shape[-1])[None]
    a = a / a.sum(axis=-1, keepdims=True)
    rollout = a if rollout is None else a @ rollout
  return rollout


def cls_patch_attention(
    weights: list[np.ndarray], grid: tuple[int, int], cls_token: bool
) -> np.ndarray:
  """[b, grid_h, grid_w] rollout attention of [CLS] (or the mean token) over the patches."""
  rollout = attention_rollout(weights)
  if cls_token:
    scores = rollout[:, 0, 1:]  # [b, patches]
  else:
    scores = rollout.mean(axis=1)  # [b, patches]
  scores = scores / scores.sum(axis=-1, keepdims=True)
  return scores.reshape(scores.shape[0], *grid)


def patch_heat(attn: np.ndarray, patch_size: int, image_shape: tuple[int, int]) -> np.ndarray:
  """Patch-grid values [rows, cols] -> pixel grid [h, w]: patch (r, c) covers pixels
  [r·p, (r+1)·p) x [c·p, (c+1)·p), the last row/column cut at the image border."""
  h, w = image_shape
  return np.kron(attn, np.ones((patch_size, patch_size)))[:h, :w]


def plot_cls_attention(
    images: np.ndarray,
    weights: list[np.ndarray],
    *,
    patch_size: int,
    cls_token: bool,
    titles: list[str],
    path: str,
) -> str:
  """Images [b, h, w, c] in [0, 1] with the patch attention overlaid; writes a PNG."""
  fig = cls_attention_figure(
      images, weights, patch_size=patch_size, cls_token=cls_token, titles=titles
  )
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def cls_attention_figure(
    images: np.ndarray,
    weights: list[np.ndarray],
    *,
    patch_size: int,
    cls_token: bool,
    titles: list[str],
) -> plt.Figure:
  """The figure of `plot_cls_attention`: row 0 the images, row 1 image + heat map."""
  b, h, w, _ = images.shape
  attn = cls_patch_attention(weights, patch_grid((h, w), patch_size), cls_token)
  fig, axes = plt.subplots(2, b, figsize=(1.8 * b, 4.0), squeeze=False, layout='constrained')
  extent = (0, w, h, 0)  # both layers on the same pixel grid: patch (r, c) covers its pixels
  for i in range(b):
    image = images[i].mean(axis=-1)
    heat = patch_heat(attn[i], patch_size, (h, w))  # patch grid -> pixels [h, w]
    axes[0, i].imshow(image, cmap='gray', vmin=0, vmax=1, extent=extent, interpolation='nearest')
    axes[0, i].set_title(titles[i], fontsize=8)
    axes[1, i].imshow(image, cmap='gray', vmin=0, vmax=1, extent=extent, interpolation='nearest')
    axes[1, i].imshow(heat, cmap='inferno', alpha=0.55, extent=extent, interpolation='nearest')
    for ax in axes[:, i]:
      ax.set_xlim(0, w)
      ax.set_ylim(h, 0)
      ax.set_aspect('equal')
      ax.set_xticks([])
      ax.set_yticks([])
  axes[1, 0].set_ylabel('[CLS] rollout' if cls_token else 'mean rollout', fontsize=8)
  fig.suptitle('attention rollout over patches (bottom) on test images (top)', fontsize=9)
  return fig
