"""One entry point, `attend`, over three implementations of the same attention.

    out, weights = attend(q, k, v, AttentionConfig(implementation="auto"), causal=True, mask=pad_mask)

The settings (score, weighting, window, dropout rate, implementation, chunk sizes) come whole in
one `AttentionConfig`, validated when it was made; the arguments of a call are the arrays and
what changes from call to call (mask, causality, decode offset, centres, dropout key).

q [batch, heads, q_len, d_k], k [batch, heads, k_len, d_k], v [batch, heads, k_len, d_v];
out [batch, heads, q_len, d_v]; weights [batch, heads, q_len, k_len] (float32) or None.

* `reference`: the pure functions of `transformer.attention` (every score function and
  weighting; the only implementation that can return the weights).
* `fused`: `jax.nn.dot_product_attention` (XLA on CPU/TPU, cuDNN flash attention on NVIDIA GPUs
  for fp16/bf16) for scaled-dot soft attention, optionally local (window around q_offset + i).
* `chunked`: `transformer.chunked_attention`, O(length) memory for every score function with
  soft or local weighting.
* `auto`: `fused` where it applies and no weights are requested, else `reference`.

Masks: `mask` (bool, broadcastable to [b, h, q_len, k_len], True = may attend) plus
`causal=True` (key j visible iff j <= q_offset + i, no dense mask needed) and, for local
weighting, the window around `centers` or, by default, around the absolute query position
q_offset + i. A query row whose keys are all masked gives zeros, never NaN, in every
implementation.

Attention dropout (`cfg.dropout_rate` with a `dropout_rng`): `reference` draws one mask over the
whole [b, h, q, k] weights; `chunked` draws per (query block, key block) from keys folded out
of `dropout_rng` (same distribution, different bits, depends on the chunk sizes); `fused` has
none, so `auto` uses `reference` while training with attention dropout.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import jax
import jax.numpy as jnp

from transformer.attention import reference_attention
from transformer.attention_config import AttentionConfig
from transformer.chunked_attention import chunked_attention
from transformer.masks import as_4d_mask, combine_masks

Array = jnp.ndarray


def offset_causal_mask(q_len: int, k_len: int, q_offset: Union[int, Array] = 0) -> Array:
  """[1, 1, q_len, k_len] bool: key j visible from query i iff j <= q_offset + i."""
  i = jnp.arange(q_len)[:, None] + q_offset
  return (jnp.arange(k_len)[None, :] <= i)[None, None]


def query_positions(q_len: int, q_offset: Union[int, Array] = 0) -> Array:
  """[q_len] float32 absolute positions q_offset + i (the default local-window centres)."""
  return jnp.arange(q_len, dtype=jnp.float32) + jnp.asarray(q_offset, jnp.float32)


def fused_unsupported(
    cfg: AttentionConfig,
    q: Array,
    k: Array,
    v: Array,
    *,
    centers: Optional[Array] = None,
    dropout_rng: Optional[jax.Array] = None,
) -> Optional[str]:
  """Why `fused` cannot compute this attention, or None when it can."""
  if cfg.score != "scaled_dot":
    return f"score={cfg.score!r} (fused supports only 'scaled_dot')"
  if cfg.weighting not in ("soft", "local"):
    return f"weighting={cfg.weighting!r} (fused supports 'soft' and 'local')"
  if cfg.weighting == "local" and (centers is not None or cfg.gaussian):
    return "local weighting with explicit centers or gaussian=True (fused: window around q_offset + i only)"
  if cfg.dropout_rate > 0.0 and dropout_rng is not None:
    return "attention dropout (jax.nn.dot_product_attention has none)"
  if v.shape[-1] != k.shape[-1]:
    return (
        f"d_v={v.shape[-1]} != d_k={k.shape[-1]} (jax.nn.dot_product_attention needs equal widths)"
    )
  if not (q.dtype == k.dtype == v.dtype):
    return f"mixed dtypes q {q.dtype}, k {k.dtype}, v {v.dtype}"
  return None


def resolve_implementation(
    cfg: AttentionConfig,
    q: Array,
    k: Array,
    v: Array,
    *,
    need_weights: bool = False,
    centers: Optional[Array] = None,
    dropout_rng: Optional[jax.Array] = None,
) -> str:
  """The concrete implementation `attend` runs for `cfg.implementation` ('reference' |
  'fused' | 'chunked'). Raises ValueError for a call the named implementation cannot compute."""
  why_not_fused = fused_unsupported(cfg, q, k, v, centers=centers, dropout_rng=dropout_rng)
  implementation = cfg.implementation
  if implementation == "auto":
    return "fused" if not need_weights and why_not_fused is None else "reference"
  if need_weights and implementation != "reference":
    raise ValueError(
        f"attention implementation {implementation!r} cannot return the attention weights "
        "(need_weights=True); use 'reference' or 'auto'."
    )
  if implementation == "fused" and why_not_fused is not None:
    raise ValueError(f"attention implementation 'fused' does not support {why_not_fused}.")
  return implementation


def attend(
    q: Array,
    k: Array,
    v: Array,
    cfg: AttentionConfig = AttentionConfig(),
    *,
    mask: Optional[Array] = None,
    causal: bool = False,
    q_offset: Union[int, Array] = 0,
    score_params: Optional[Mapping[str, Array]] = None,
    centers: Optional[Array] = None,
    dropout_rng: Optional[jax.Array] = None,
    need_weights: bool = False,
) -> tuple[Array, Optional[Array]]:
  """Attention of q over (k, v) with the settings `cfg`, by `cfg.implementation` (see the
  module docstring).

  mask: bool, broadcastable to [b, h, q_len, k_len]; causal: key j visible iff
  j <= q_offset + i; score_params: of a parametric score function (`init_score_params`);
  centers: local-window centres [q_len] or [b, q_len] (default: q_offset + i); dropout_rng:
  attention dropout (training). Returns `(out [b, h, q_len, d_v], weights [b, h, q_len, k_len]
  float32 or None)`; weights only with `need_weights=True` (reference path), before dropout.
  """
  impl = resolve_implementation(
      cfg, q, k, v, need_weights=need_weights, centers=centers, dropout_rng=dropout_rng
  )
  q_len, k_len = q.shape[2], k.shape[2]
  if impl == "reference":
    if causal:
      mask = combine_masks(mask, offset_causal_mask(q_len, k_len, q_offset))
    if cfg.weighting == "local" and centers is None and not _is_zero(q_offset):
      centers = query_positions(q_len, q_offset)
    out, weights = reference_attention(
        q, k, v, cfg, mask=mask, score_params=score_params, centers=centers, dropout_rng=dropout_rng
    )
    return out, (weights if need_weights else None)
  if impl == "fused":
    window = cfg.window if cfg.weighting == "local" else None
    return (
        fused_attention(q, k, v, mask=mask, causal=causal, q_offset=q_offset, window=window),
        None,
    )
  out = chunked_attention(
      q,
      k,
      v,
      cfg,
      mask=mask,
      causal=causal,
      q_offset=q_offset,
      score_params=score_params,
      centers=centers,
      dropout_rng=dropout_rng,
  )
  return out, None


def fused_backend(dtype) -> str:
  """`implementation` for jax.nn.dot_product_attention: 'cudnn' on NVIDIA GPUs for fp16/bf16
  (cuDNN flash attention has no fp32 kernel), else 'xla'."""
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
  return "cudnn" if half and jax.default_backend() == "gpu" and _is_cuda() else "xla"


def _is_cuda() -> bool:
  try:
    return "cuda" in jax.devices()[0].client.platform_version.lower()
  except (AttributeError, IndexError, RuntimeError):
    return False


def fused_attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    mask: Optional[Array] = None,
    causal: bool = False,
    q_offset: Union[int, Array] = 0,
    window: Optional[int] = None,
) -> Array:
  """Scaled-dot soft attention by `jax.nn.dot_product_attention`, out [b, h, q_len, d_v].

  `window`: local weighting, keys with |j - (q_offset + i)| <= window. Rows without any
  visible key are zeroed (the library would average over all keys there).
  """
  q_len, k_len = q.shape[2], k.shape[2]
  mask = as_4d_mask(mask, (q.shape[0], q.shape[1], q_len, k_len))
  backend = fused_backend(q.dtype)
  # The library's own causal mask is j <= i (XLA; cuDNN aligns it the same way when
  # q_len == k_len): use it only when q_offset is a literal 0, else an explicit mask.
  use_is_causal = causal and _is_zero(q_offset) and (backend == "xla" or q_len == k_len)
  structural = None  # [1, 1, q_len, k_len] masks the library cannot express
  if causal and not use_is_causal:
    structural = offset_causal_mask(q_len, k_len, q_offset)
  if window is not None:
    c = query_positions(q_len, q_offset)[:, None]
    local = jnp.abs(jnp.arange(k_len, dtype=jnp.float32)[None, :] - c) <= window
    structural = combine_masks(structural, local[None, None])
  lib_mask = combine_masks(mask, structural)
  if lib_mask is not None:
    lib_mask = jnp.broadcast_to(
        lib_mask, (lib_mask.shape[0], lib_mask.shape[1], q_len, k_len)
    )  # cuDNN wants all four dims
  t = lambda x: jnp.swapaxes(x, 1, 2)  # [b, h, len, d] <-> [b, len, h, d]
  kwargs = dict(mask=lib_mask, is_causal=use_is_causal)
  try:
    out = jax.nn.dot_product_attention(t(q), t(k), t(v), implementation=backend, **kwargs)
  except (NotImplementedError, ValueError):
    if backend == "xla":
      raise
    # cuDNN rejects some shapes (head width, odd lengths with a mask): XLA computes the same.
    out = jax.nn.dot_product_attention(t(q), t(k), t(v), implementation="xla", **kwargs)
  out = t(out)  # [b, h, q_len, d_v]
  if mask is None and window is None:
    return out  # every row sees key 0 (causal) or every key
  has_key = _rows_with_a_key(mask, q_len, k_len, causal, q_offset, window)  # [b|1, h|1, q, 1]
  return jnp.where(has_key, out, jnp.zeros((), out.dtype))


def _rows_with_a_key(
    mask: Optional[Array],
    q_len: int,
    k_len: int,
    causal: bool,
    q_offset: Union[int, Array],
    window: Optional[int],
) -> Array:
  """[b|1, h|1, q_len, 1] bool: query row i has at least one visible key.

  A mask without a query axis ([.., 1, k_len]) is counted with a prefix sum over keys against
  each row's visible interval [lo_i, hi_i] (causal / window), so no [q, k] array is built.
  """
  if mask is not None and mask.shape[2] != 1:
    full = combine_masks(mask, offset_causal_mask(q_len, k_len, q_offset) if causal else None)
    if window is not None:
      c = query_positions(q_len, q_offset)[:, None]
      full = combine_masks(full, (jnp.abs(jnp.arange(k_len) - c) <= window)[None, None])
    return jnp.any(full, axis=-1, keepdims=True)
  pos = query_positions(q_len, q_offset)  # [q] float32
  lo = jnp.zeros((q_len,), jnp.int32)
  hi = jnp.full((q_len,), k_len - 1, jnp.int32)
  if causal:
    hi = jnp.minimum(hi, jnp.floor(pos).astype(jnp.int32))
  if window is not None:
    lo = jnp.maximum(lo, jnp.ceil(pos - window).astype(jnp.int32))
    hi = jnp.minimum(hi, jnp.floor(pos + window).astype(jnp.int32))
  if mask is None:
    return (lo <= hi)[None, None, :, None]
  counts = jnp.cumsum(mask[:, :, 0, :].astype(jnp.int32), axis=-1)  # [b|1, h|1, k]
  counts = jnp.pad(counts, ((0, 0), (0, 0), (1, 0)))  # counts[..., j] = #visible keys < j
  upto = jnp.take(counts, jnp.clip(hi + 1, 0, k_len), axis=-1)
  before = jnp.take(counts, jnp.clip(lo, 0, k_len), axis=-1)
  return ((lo <= hi) & (upto > before))[..., None]


def _is_zero(x: Union[int, Array]) -> bool:
  """True iff `x` is a Python/NumPy integer 0 (a traced value is never known to be zero)."""
  return isinstance(x, int) and x == 0
