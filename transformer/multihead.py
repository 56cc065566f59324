"""Multi-head attention as a thin Flax Linen module over the functional core.

`MultiHeadAttention` projects inputs to `num_heads` heads of width d_k = qkv_features / heads,
runs `transformer.attention.attention` (any score function and weighting), applies dropout to
the weights, concatenates the heads and projects them back:

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

Its three uses (all share the same parameter names, so weights are interchangeable):

    SelfAttention(num_heads=4)(x, mask=padding_mask(ids=src))          # q = k = v = x
    CrossAttention(num_heads=4)(y, memory, mask=padding_mask(ids=src))  # q from y, k = v = memory
    CausalSelfAttention(num_heads=4)(y)                                # key j visible iff j <= i

or equivalently `MultiHeadAttention(...)(inputs_q, inputs_kv=None, mask=None)` with `causal=True`.

The attention weights `[batch, heads, q_len, k_len]` (before dropout) are always sown into
the 'intermediates' collection under the name 'attention_weights'; read them with
`model.apply(variables, ..., mutable=['intermediates'])`.

Incremental decoding (flax WMT-example convention), self-attention only:
1. initialise with `decode=True` and the *full-length* input [batch, max_len, d]: this creates
   the 'cache' collection {'cached_key', 'cached_value': [batch, heads, max_len, d_k] zeros,
   'cache_index': int32 scalar 0};
2. call with `decode=True`, one token [batch, 1, d] per call and `mutable=['cache']`: the new
   key/value is written at `cache_index`, the query attends to cache positions <= cache_index
   (so the output equals the full causal pass), and `cache_index` advances by one.
With `rope=True` queries/keys are rotated at their absolute position (cache_index when decoding).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer.attention import SCORE_FUNCTIONS, WEIGHTINGS, attention, init_score_params
from transformer.masks import causal_mask, combine_masks
from transformer.positional import ROPE_BASE, apply_rope, check_length

Array = jnp.ndarray


class MultiHeadAttention(nn.Module):
  """Multi-head attention with a pluggable score function and weighting.

  Attributes:
    num_heads: number of heads h.
    qkv_features: total projected width h · d_k (default: width of inputs_q).
    out_features: output width (default: width of inputs_q).
    score: 'dot' | 'scaled_dot' | 'general' | 'additive' | 'location'. The parameters of the
      parametric scores live in the param 'score_params' and are passed to the pure function.
    weighting: 'soft' | 'hard' | 'local'.
    window: half-width w of the local window (weighting='local').
    straight_through: hard weighting with a straight-through (softmax) gradient.
    d_a: hidden width of the additive score (default d_k).
    max_len: longest key length: needed by the 'location' score; with `rope` or a decode
      cache, longer sequences raise a ValueError.
    causal: add a causal mask (query i sees keys j <= i).
    rope: apply rotary position embeddings to q and k (self-attention).
    dropout_rate: dropout on the attention weights (needs the 'dropout' RNG when training).
    dtype: computation dtype (params stay float32; softmax is always float32).
  """

  num_heads: int
  qkv_features: Optional[int] = None
  out_features: Optional[int] = None
  score: str = "scaled_dot"
  weighting: str = "soft"
  window: Optional[int] = None
  straight_through: bool = False
  d_a: Optional[int] = None
  max_len: Optional[int] = None
  causal: bool = False
  rope: bool = False
  rope_base: float = ROPE_BASE
  dropout_rate: float = 0.0
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.xavier_uniform()

  def _check_settings(self, inputs_q: Array, inputs_kv: Array) -> int:
    """Validates settings and shapes; returns d_k."""
    name = type(self).__name__
    if self.score not in SCORE_FUNCTIONS:
      raise ValueError(
          f"{name}: unknown score function {self.score!r}; choose from {sorted(SCORE_FUNCTIONS)}."
      )
    if self.weighting not in WEIGHTINGS:
      raise ValueError(
          f"{name}: unknown weighting {self.weighting!r}; choose from {list(WEIGHTINGS)}."
      )
    if self.weighting == "local" and (self.window is None or self.window < 0):
      raise ValueError(f"{name}: weighting='local' needs window >= 0, got window={self.window}.")
    if self.score == "location" and not self.max_len:
      raise ValueError(f"{name}: score='location' needs max_len, got max_len={self.max_len}.")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"{name}: dropout_rate must be in [0, 1), got {self.dropout_rate}.")
    if inputs_q.ndim != 3 or inputs_kv.ndim != 3:
      raise ValueError(
          f"{name}: inputs must be [batch, len, features], got inputs_q{inputs_q.shape} "
          f"and inputs_kv{inputs_kv.shape}."
      )
    if inputs_q.shape[0] != inputs_kv.shape[0]:
      raise ValueError(
          f"{name}: batch sizes differ: inputs_q {inputs_q.shape[0]} vs inputs_kv {inputs_kv.shape[0]}."
      )
    qkv_features = self.qkv_features or inputs_q.shape[-1]
    if self.num_heads < 1 or qkv_features % self.num_heads:
      raise ValueError(
          f"{name}: qkv_features={qkv_features} is not divisible by num_heads={self.num_heads}."
      )
    d_k = qkv_features // self.num_heads
    if self.rope and d_k % 2:
      raise ValueError(f"{name}: rope needs an even head width, got d_k={d_k}.")
    return d_k

  @nn.compact
  def __call__(
      self,
      inputs_q: Array,
      inputs_kv: Optional[Array] = None,
      mask: Optional[Array] = None,
      *,
      deterministic: bool = True,
      decode: bool = False,
      centers: Optional[Array] = None,
  ) -> Array:
    """inputs_q [b, q_len, d], inputs_kv [b, k_len, d_kv] (None: self-attention).

    mask: bool, broadcastable to [b, heads, q_len, k_len], True = may attend.
    centers: aligned positions for local weighting ([q_len] or [b, q_len]).
    Returns [b, q_len, out_features].
    """
    if decode and inputs_kv is not None and inputs_kv is not inputs_q:
      raise ValueError(
          f"{type(self).__name__}: decode=True caches self-attention keys/values; "
          "cross-attention over a fixed memory needs no cache (call it with decode=False)."
      )
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    d_k = self._check_settings(inputs_q, inputs_kv)
    h = self.num_heads
    q_len, k_len = inputs_q.shape[1], inputs_kv.shape[1]
    if self.max_len is not None and (self.rope or decode):
      check_length(max(q_len, k_len), self.max_len)

    dense = functools.partial(
        nn.DenseGeneral,
        features=(h, d_k),
        axis=-1,
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
    )
    # [b, len, h, d_k] -> [b, h, len, d_k]
    q = jnp.swapaxes(dense(name="query")(inputs_q), 1, 2)
    k = jnp.swapaxes(dense(name="key")(inputs_kv), 1, 2)
    v = jnp.swapaxes(dense(name="value")(inputs_kv), 1, 2)

    score_params = None
    if self.score not in ("dot", "scaled_dot"):
      score_params = self.param(
          "score_params",
          lambda rng: init_score_params(
              self.score,
              rng,
              h,
              d_k,
              d_a=self.d_a,
              max_len=self.max_len,
              dtype=self.param_dtype,
          ),
      )

    stepping = False
    if decode:
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      stepping = is_initialized
    if stepping:
      # One new token: write its key/value at cache_index, attend to positions <= index.
      if q_len != 1:
        raise ValueError(
            f"{type(self).__name__}: decode=True takes one token per call, got q_len={q_len}."
        )
      cache_len = cached_key.value.shape[2]
      i = cache_index.value
      if self.rope:
        q = apply_rope(q, i[None], base=self.rope_base)
        k = apply_rope(k, i[None], base=self.rope_base)
      k = jax.lax.dynamic_update_slice(
          cached_key.value, k.astype(cached_key.value.dtype), (0, 0, i, 0)
      )
      v = jax.lax.dynamic_update_slice(
          cached_value.value, v.astype(cached_value.value.dtype), (0, 0, i, 0)
      )
      cached_key.value, cached_value.value = k, v
      cache_index.value = i + 1
      mask = combine_masks(mask, (jnp.arange(cache_len) <= i)[None, None, None, :])
      if self.weighting == "local" and centers is None:
        centers = i[None].astype(jnp.float32)  # the query's absolute position
    else:
      if self.rope:
        q = apply_rope(q, jnp.arange(q_len), base=self.rope_base)
        k = apply_rope(k, jnp.arange(k_len), base=self.rope_base)
      if self.causal:
        mask = combine_masks(mask, causal_mask(q_len, k_len))

    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng("dropout")
    out, weights = attention(
        q,
        k,
        v,
        score=self.score,
        score_params=score_params,
        weighting=self.weighting,
        mask=mask,
        window=self.window,
        centers=centers,
        straight_through=self.straight_through,
        dropout_rate=self.dropout_rate,
        dropout_rng=dropout_rng,
    )  # out [b, h, q_len, d_k], weights [b, h, q_len, k_len]
    self.sow("intermediates", "attention_weights", weights)

    out = jnp.swapaxes(out, 1, 2)  # [b, q_len, h, d_k]
    return nn.DenseGeneral(
        features=self.out_features or inputs_q.shape[-1],
        axis=(-2, -1),
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        name="out",
    )(out)


class SelfAttention(MultiHeadAttention):
  """q = k = v = x. `mask`: e.g. `padding_mask(ids=tokens)` [b, 1, 1, len]."""

  def __call__(
      self,
      x: Array,
      mask: Optional[Array] = None,
      *,
      deterministic: bool = True,
      decode: bool = False,
      centers: Optional[Array] = None,
  ) -> Array:
    return super().__call__(
        x, None, mask, deterministic=deterministic, decode=decode, centers=centers
    )


class CausalSelfAttention(SelfAttention):
  """Backward-looking self-attention (query i sees keys j <= i); supports `decode=True`."""

  causal: bool = True


class CrossAttention(MultiHeadAttention):
  """Queries from x [b, q_len, d], keys/values from memory [b, k_len, d_m].

  `mask`: memory padding mask, e.g. `padding_mask(ids=src)` [b, 1, 1, k_len].
  """

  def __call__(
      self,
      x: Array,
      memory: Array,
      mask: Optional[Array] = None,
      *,
      deterministic: bool = True,
      centers: Optional[Array] = None,
  ) -> Array:
    return super().__call__(x, memory, mask, deterministic=deterministic, centers=centers)
