"""Translating text with a trained EncoderDecoder: batched, jitted beam/greedy search.

`Translator.translate(params, texts)` tokenizes, sorts by length, decodes in fixed-shape
batches (rows = `batch_size`, source length padded to a multiple of `length_multiple`,
so there are few compilations), detokenizes and returns results in input order.
`cross_attention` recomputes the decoder on a produced translation (teacher forcing) and
returns the cross-attention weights of one layer for plotting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from experiments.text import batching
from experiments.text.tokenizer import BOS_ID, EOS_ID, Tokenizer
from transformer import decoding, stack_layout


@dataclasses.dataclass
class Translation:
  text: str  # detokenized output
  source_ids: list[int]  # what the encoder saw (incl. eos; truncated if too long)
  output_ids: list[int]  # produced target ids, eos included when produced
  score: float  # length-normalised log-probability (0 for greedy)
  truncated_from: int = 0  # original source length in tokens when truncated, else 0


@dataclasses.dataclass(frozen=True)
class SearchSettings:
  beam_size: int = 4
  alpha: float = 0.6
  max_extra_len: int = 50


class Translator:
  """Greedy/beam translation of token ids or text with one model (params passed per call)."""

  def __init__(
      self,
      model: Any,
      tokenizer: Tokenizer,
      *,
      batch_size: int = 64,
      length_multiple: int = 8,
      mesh: jax.sharding.Mesh | None = None,
  ):
    self.model = model
    self.tokenizer = tokenizer
    self.batch_size = batch_size
    self.length_multiple = length_multiple
    self.mesh = mesh

  @property
  def max_source_len(self) -> int:
    return self.model.config.max_len

  @functools.lru_cache(maxsize=8)
  def _search_fn(self, settings: SearchSettings):
    return jax.jit(
        functools.partial(
            decoding.encoder_decoder_search,
            self.model,
            beam_size=settings.beam_size,
            alpha=settings.alpha,
            max_extra_len=settings.max_extra_len,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
        )
    )

  def _put(self, src: np.ndarray) -> Any:
    if self.mesh is None:
      return src
    from experiments.parallel import sharding  # pylint: disable=g-import-not-at-top

    if src.shape[0] % sharding.data_parallel_size(self.mesh):
      return src
    return jax.device_put(src, sharding.batch_sharding(self.mesh))

  def translate_ids(
      self, params: Any, sources: Sequence[Sequence[int]], settings: SearchSettings
  ) -> list[tuple[list[int], float]]:
    """Output ids (up to and including eos) and score for each source id sequence.

    Sources must end with eos and be at most `max_source_len` long (see `truncate`)."""
    search = self._search_fn(settings)
    results: list[tuple[list[int], float]] = [([], 0.0)] * len(sources)
    for idx, batch in batching.eval_batches(sources, None, self.batch_size, self.length_multiple):
      src = batch['source']
      if src.shape[1] > self.max_source_len:  # callers truncate; keep the shape legal anyway
        src = src[:, : self.max_source_len]
      context = jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()
      with context:
        tokens, scores = search(params, self._put(src))
      tokens, scores = np.asarray(tokens), np.asarray(scores)
      for row, i in enumerate(idx):
        out = tokens[row].tolist()
        if EOS_ID in out:
          out = out[: out.index(EOS_ID) + 1]
        results[i] = (out, float(scores[row]))
    return results

  def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
    """Source ids (truncated to the model's max_len, eos kept) and original lengths."""
    ids = self.tokenizer.encode_source(texts)
    return [batching.truncate(s, self.max_source_len) for s in ids], [len(s) for s in ids]

  def translate(
      self, params: Any, texts: Sequence[str], settings: SearchSettings = SearchSettings()
  ) -> list[Translation]:
    sources, lengths = self.encode(texts)
    out = []
    for src, n, (ids, score) in zip(
        sources, lengths, self.translate_ids(params, sources, settings)
    ):
      out.append(
          Translation(
              text=self.tokenizer.decode_target(ids),
              source_ids=src,
              output_ids=ids,
              score=score,
              truncated_from=n if n > len(src) else 0,
          )
      )
    return out

  def cross_attention(
      self, params: Any, source_ids: Sequence[int], output_ids: Sequence[int], layer: int = -1
  ) -> np.ndarray:
    """Cross-attention weights [heads, len(output_ids), len(source_ids)] of decoder `layer`.

    Row i is where the decoder looked while predicting output token i (its input is
    bos + output[:i])."""
    src = np.asarray([source_ids], np.int32)
    tgt_in = np.asarray([[BOS_ID, *list(output_ids)[:-1]]], np.int32)
    _, state = self.model.apply(
        {'params': params}, src, tgt_in, train=False, mutable=['intermediates']
    )
    per_layer = stack_layout.attention_weights(state['intermediates'], 'decoder', 'cross_attention')
    if not -len(per_layer) <= layer < len(per_layer):
      raise ValueError(
          f'decoder layer {layer} does not exist; the model has {len(per_layer)} '
          f'(use 0..{len(per_layer) - 1} or -1 for the last)'
      )
    return np.asarray(per_layer[layer][0])  # [1, h, t, s] -> [h, t, s]
