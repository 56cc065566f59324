"""Multi-head attention as a thin Flax Linen module over the functional core.

`MultiHeadAttention` projects inputs to `num_heads` heads of width d_k = qkv_features / heads,
runs `transformer.attention_impl.attend` (any score function and weighting, by the
implementation `config.implementation` asks for), concatenates the heads and projects back:

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

Every attention setting (score, weighting, window, RoPE, dropout, implementation, ...) is one
frozen `AttentionConfig` (attention_config.py), the module attribute `config`, passed whole to
`attend`. Its three uses
(all share the same parameter names, so weights are interchangeable):

    SelfAttention(num_heads=4)(x, mask=padding_mask(ids=src))          # q = k = v = x
    CrossAttention(num_heads=4)(y, memory, mask=padding_mask(ids=src))  # q from y, k = v = memory
    CausalSelfAttention(num_heads=4)(y)                                # key j visible iff j <= i

or equivalently `MultiHeadAttention(...)(inputs_q, inputs_kv=None, mask=None)` with `causal=True`.
Parameters 'query'/'key'/'value' (kernel [d, heads, d_k]) and 'out' (kernel [heads, d_k, d])
are laid out as in `flax.linen.MultiHeadDotProductAttention`.

Attention weights `[batch, heads, q_len, k_len]` (before dropout) are sown into the
'intermediates' collection under the name 'attention_weights' whenever that collection is
mutable: `model.apply(variables, ..., mutable=['intermediates'])`. Asking for them makes the
layer compute them, i.e. run the 'reference' implementation (plots and alignments always get
weights); otherwise 'auto' picks the fused kernel where it applies.

Incremental decoding (flax WMT-example convention), self-attention only:
1. initialise with `decode=True` and the *full-length* input [batch, max_len, d]: this creates
   the 'cache' collection {'cached_key', 'cached_value': [batch, heads, max_len, d_k] zeros,
   'cache_index': int32 scalar 0};
2. call with `decode=True`, one token [batch, 1, d] per call and `mutable=['cache']`: the new
   key/value is written at `cache_index`, the query attends to cache positions <= cache_index
   (so the output equals the full causal pass), and `cache_index` advances by one.
With `config.rope` queries/keys are rotated at their absolute position (cache_index when
decoding).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer.attention import init_score_params
from transformer.attention_config import AttentionConfig
from transformer.attention_impl import attend
from transformer.positional import apply_rope, check_length

Array = jnp.ndarray


def attend_in_module(
    module: nn.Module,
    q: Array,
    k: Array,
    v: Array,
    cfg: AttentionConfig,
    *,
    deterministic: bool,
    **attend_kwargs: Any,
) -> tuple[Array, Optional[Array]]:
  """`attend(q, k, v, cfg, **attend_kwargs)` called inside `module` (a bound Flax module):
  attention dropout with the module's 'dropout' rng unless `deterministic` (or dropout_rate
  is 0), and the weights [b, h, q_len, k_len] by the 'reference' implementation whenever the
  module's 'intermediates' collection is mutable (else None). Returns (out, weights)."""
  need_weights = module.is_mutable_collection("intermediates")
  dropout_rng = None
  if not deterministic and cfg.dropout_rate > 0.0:
    dropout_rng = module.make_rng("dropout")
  return attend(
      q,
      k,
      v,
      cfg.replace(implementation="reference") if need_weights else cfg,
      dropout_rng=dropout_rng,
      need_weights=need_weights,
      **attend_kwargs,
  )


class MultiHeadAttention(nn.Module):
  """Multi-head attention with a pluggable score function, weighting and implementation.

  Attributes:
    num_heads: number of heads h.
    config: every attention setting (`AttentionConfig`).
    qkv_features: total projected width h · d_k (default: width of inputs_q).
    out_features: output width (default: width of inputs_q).
    max_len: longest key length: needed by the 'location' score; with RoPE or a decode
      cache, longer sequences raise a ValueError.
    causal: query i sees keys j <= i only (self-attention).
    dtype: computation dtype (params stay `param_dtype`; softmax is always float32).
  """

  num_heads: int
  config: AttentionConfig = AttentionConfig()
  qkv_features: Optional[int] = None
  out_features: Optional[int] = None
  max_len: Optional[int] = None
  causal: bool = False
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.xavier_uniform()

  def _check_settings(self, cfg: AttentionConfig, inputs_q: Array, inputs_kv: Array) -> int:
    """Validates settings and shapes; returns d_k."""
    name = type(self).__name__
    if not isinstance(cfg, AttentionConfig):
      raise TypeError(
          f"{name}: config must be an AttentionConfig (AttentionConfig.of converts a dict of its "
          f"fields), got {type(cfg).__name__}."
      )
    if cfg.score == "location" and not self.max_len:
      raise ValueError(f"{name}: score='location' needs max_len, got max_len={self.max_len}.")
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
    if cfg.rope and d_k % 2:
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
    centers: aligned positions for local weighting ([q_len] or [b, q_len]); overrides
      `config.centers`.
    Returns [b, q_len, out_features].
    """
    cfg = self.config
    if decode and inputs_kv is not None and inputs_kv is not inputs_q:
      raise ValueError(
          f"{type(self).__name__}: decode=True caches self-attention keys/values; "
          "cross-attention over a fixed memory needs no cache (call it with decode=False)."
      )
    inputs_kv = inputs_q if inputs_kv is None else inputs_kv
    d_k = self._check_settings(cfg, inputs_q, inputs_kv)
    h = self.num_heads
    q_len, k_len = inputs_q.shape[1], inputs_kv.shape[1]
    if self.max_len is not None and (cfg.rope or decode):
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
    if cfg.score not in ("dot", "scaled_dot"):
      score_params = self.param(
          "score_params",
          lambda rng: init_score_params(
              cfg.score, rng, h, d_k, d_a=cfg.d_a, max_len=self.max_len, dtype=self.param_dtype
          ),
      )

    stepping = False
    if decode:
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      stepping = is_initialized
    causal, q_offset = self.causal, 0
    if stepping:
      # One new token: write its key/value at cache_index, attend to positions <= index.
      if q_len != 1:
        raise ValueError(
            f"{type(self).__name__}: decode=True takes one token per call, got q_len={q_len}."
        )
      i = cache_index.value
      if cfg.rope:
        q = apply_rope(q, i[None], base=cfg.rope_base)
        k = apply_rope(k, i[None], base=cfg.rope_base)
      k = jax.lax.dynamic_update_slice(
          cached_key.value, k.astype(cached_key.value.dtype), (0, 0, i, 0)
      )
      v = jax.lax.dynamic_update_slice(
          cached_value.value, v.astype(cached_value.value.dtype), (0, 0, i, 0)
      )
      cached_key.value, cached_value.value = k, v
      cache_index.value = i + 1
      causal, q_offset = True, i  # keys j <= i: the filled part of the cache
    elif cfg.rope:
      q = apply_rope(q, jnp.arange(q_len), base=cfg.rope_base)
      k = apply_rope(k, jnp.arange(k_len), base=cfg.rope_base)

    if cfg.weighting == "local" and centers is None and cfg.centers == "predicted":
      if causal:  # the last key query i may see is q_offset + i
        last = jnp.arange(q_len, dtype=jnp.float32) + jnp.asarray(q_offset, jnp.float32)
      else:
        last = jnp.full((q_len,), k_len - 1, jnp.float32)
      centers = CenterPredictor(dtype=self.dtype, name="centers")(inputs_q, last)

    out, weights = attend_in_module(
        self,
        q,
        k,
        v,
        cfg,
        deterministic=deterministic,
        mask=mask,
        causal=causal,
        q_offset=q_offset,
        score_params=score_params,
        centers=centers,
    )  # out [b, h, q_len, d_k], weights [b, h, q_len, k_len] or None
    if weights is not None:
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


class CenterPredictor(nn.Module):
  """Luong et al. 2015 local-p: p_t = last_t · sigmoid(v_pᵀ tanh(W_p x_t)).

  x [b, q_len, d] (the attention's query input), last [q_len] float32 (the last key each
  query may see) -> centres [b, q_len] float32 in [0, last_t]. Params 'hidden' (W_p, width d)
  and 'score' (v_p).
  """

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, last: Array) -> Array:
    hidden = jnp.tanh(nn.Dense(x.shape[-1], dtype=self.dtype, name="hidden")(x))
    logit = nn.Dense(1, dtype=self.dtype, name="score")(hidden)[..., 0]  # [b, q_len]
    return jax.nn.sigmoid(logit.astype(jnp.float32)) * last


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
