"""Cross-attention heatmaps of a translation (source pieces on x, target pieces on y)."""

from __future__ import annotations

from typing import Any

from experiments.translation.inference import Translation, Translator
from transformer.plotting import plot_attention


def plot_cross_attention(
    translator: Translator,
    params: Any,
    translation: Translation,
    path_prefix: str,
    *,
    layer: int = -1,
    title: str | None = None,
) -> list[str]:
  """Writes `PREFIX.png` (mean over heads) and `PREFIX_heads.png` (one panel per head) of
  decoder `layer`'s cross-attention; returns the two paths."""
  if not translation.output_ids:
    raise ValueError('empty translation: nothing to plot')
  weights = translator.cross_attention(
      params, translation.source_ids, translation.output_ids, layer
  )  # [heads, t, s]
  tok = translator.tokenizer
  x_tokens = tok.source_pieces(translation.source_ids)
  y_tokens = tok.target_pieces(translation.output_ids)
  layer_name = f'decoder layer {layer if layer >= 0 else "last"}'
  head = f'{title} — ' if title else ''
  paths = [
      plot_attention(
          weights.mean(axis=0),
          x_tokens,
          y_tokens,
          f'{path_prefix}.png',
          title=f'{head}cross-attention, {layer_name}, mean of {weights.shape[0]} heads',
      ),
      plot_attention(
          weights,
          x_tokens,
          y_tokens,
          f'{path_prefix}_heads.png',
          title=f'{head}cross-attention per head, {layer_name}',
      ),
  ]
  return paths
