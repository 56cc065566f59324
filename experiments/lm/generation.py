"""Prompted generation and causal-attention heatmaps with a trained `LanguageModel`.

`Generator.generate` tokenizes prompts (`[bos] + pieces`, no eos), samples continuations
with the KV cache (`transformer.sampling.language_model_sample`: temperature, top-k, greedy
at temperature 0) in one jitted batch, and decodes them. The output is a deterministic
function of (params, prompts, settings, seed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from transformer import stack_layout
from transformer.plotting import plot_attention
from transformer.sampling import language_model_sample


class PromptTooLongError(ValueError):
  """A prompt leaves no room for a new token within the model's max_len."""


@dataclasses.dataclass
class Sample:
  prompt_ids: list[int]  # bos + prompt pieces
  new_ids: list[int]  # the continuation (eos included when emitted)
  text: str  # prompt + continuation, decoded

  @property
  def ids(self) -> list[int]:
    return self.prompt_ids + self.new_ids


def first_words(lines: Sequence[str], count: int, words: int) -> list[str]:
  """The first `words` words of the first `count` lines (prompts for samples)."""
  return [' '.join(line.split()[:words]) for line in lines[:count]]


class Generator:
  """Samples from `model` (a LanguageModel) with `tokenizer`; jitted once per shape."""

  def __init__(self, model: Any, tokenizer: Tokenizer, *, mesh: jax.sharding.Mesh | None = None):
    self.model = model
    self.tokenizer = tokenizer
    self.mesh = mesh
    self.max_len = model.config.max_len
    self._sample = jax.jit(
        functools.partial(language_model_sample, model, eos_id=EOS_ID),
        static_argnames=('max_new_tokens', 'top_k'),
    )
    self._weights = jax.jit(
        lambda params, ids: model.apply({'params': params}, ids, mutable=['intermediates'])[1]
    )

  def _context(self):
    return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

  def prompt_ids(self, prompt: str) -> list[int]:
    """bos + pieces of `prompt`; PromptTooLongError when no new token would fit."""
    ids = [BOS_ID] + self.tokenizer.target.encode(prompt)
    if len(ids) >= self.max_len:
      raise PromptTooLongError(
          f'the prompt is {len(ids)} tokens (with bos); the model reads at most '
          f'max_len={self.max_len}, leaving no room to generate'
      )
    return ids

  def generate(
      self,
      params: Any,
      prompts: Sequence[str],
      *,
      temperature: float = 1.0,
      top_k: int = 0,
      max_new_tokens: int = 50,
      seed: int = 0,
      num_samples: int = 1,
  ) -> list[Sample]:
    """`num_samples` continuations of every prompt, prompt-major (prompt i, sample j at
    i * num_samples + j). Raises PromptTooLongError naming the first prompt that does not fit."""
    encoded = [self.prompt_ids(p) for p in prompts for _ in range(num_samples)]
    if not encoded:
      return []
    longest = max(len(ids) for ids in encoded)
    width = min(-(-longest // 16) * 16, self.max_len)  # few prompt shapes = few compilations
    prompt = np.full((len(encoded), width), PAD_ID, np.int32)
    for i, ids in enumerate(encoded):
      prompt[i, : len(ids)] = ids
    lengths = np.array([len(ids) for ids in encoded], np.int32)
    with self._context():
      tokens = self._sample(
          params,
          prompt,
          lengths,
          jax.random.PRNGKey(seed),
          max_new_tokens=max_new_tokens,
          temperature=jnp.float32(temperature),
          top_k=top_k,
      )
    tokens = np.asarray(jax.device_get(tokens))
    samples = []
    for ids, row in zip(encoded, tokens):
      new = row[len(ids) :].tolist()
      if EOS_ID in new:
        new = new[: new.index(EOS_ID) + 1]
      else:
        new = [t for t in new if t != PAD_ID]
      samples.append(Sample(ids, new, self.tokenizer.decode_target(ids + new)))
    return samples

  def attention(self, params: Any, ids: Sequence[int], layer: int = -1) -> np.ndarray:
    """Causal self-attention weights [heads, len, len] of `layer` over the sequence `ids`."""
    num_layers = self.model.config.num_layers
    if not -num_layers <= layer < num_layers:
      raise ValueError(f'layer {layer}: the model has {num_layers} layers')
    with self._context():
      state = self._weights(params, jnp.asarray([list(ids)], jnp.int32))
    weights = stack_layout.attention_weights(state['intermediates'], 'decoder', 'self_attention')
    return np.asarray(jax.device_get(weights[layer]))[0]

  def plot_attention(
      self,
      params: Any,
      text: str,
      path_prefix: str,
      *,
      layer: int = -1,
      title: str | None = None,
  ) -> list[str]:
    """Writes `PREFIX.png` (mean over heads) and `PREFIX_heads.png` (one panel per head) of
    `layer`'s causal self-attention over bos + the pieces of `text`; returns the paths."""
    ids = self.prompt_ids(text)
    weights = self.attention(params, ids, layer)  # [heads, t, t]
    pieces = ['<s>'] + [self.tokenizer.target.id_to_piece(int(i)) for i in ids[1:]]
    layer_name = f'layer {layer if layer >= 0 else "last"}'
    head = f'{title} — ' if title else ''
    return [
        plot_attention(
            weights.mean(axis=0),
            pieces,
            pieces,
            f'{path_prefix}.png',
            title=f'{head}causal self-attention, {layer_name}, mean of {weights.shape[0]} heads',
        ),
        plot_attention(
            weights,
            pieces,
            pieces,
            f'{path_prefix}_heads.png',
            title=f'{head}causal self-attention per head, {layer_name}',
        ),
    ]
