"""Memory-efficient ("chunked") attention in pure JAX, for every score function.

Queries are processed in blocks of `query_chunk_size` (a `lax.scan`); for each query block
the keys are visited in blocks of `key_chunk_size` (an inner `lax.scan`) with an online
softmax (Milakov & Gimelshein 2018; Rabe & Staats 2021; FlashAttention): per query row a
running maximum m, a running normaliser l = Σ exp(s - m) and a running weighted sum of values
acc = Σ exp(s - m) · c · v are rescaled by exp(m_old - m_new) as each block arrives, and the
output is acc / l. Only one [b, h, q_chunk, k_chunk] block of scores exists at a time, so
memory is O(length), not O(length²).

The backward pass stores no score block either: both scan bodies are `jax.checkpoint`ed, so
a query block's forward is recomputed block by block when its gradient is needed (residuals:
the inputs plus one (acc, m, l) carry of [b, h, q_chunk, d_v] per key block).

Every score function is computed per block (`transformer.attention` has the full-matrix
versions): dot, scaled_dot and general are a dot product of per-position features
(q / √d_k, or q W for general), additive is v_aᵀ tanh(W_q q + W_k k) with W_q q and W_k k
precomputed once per position, and location is a dot product of q with the columns
W[:, :, j] of its position table, which play the role of keys.

Weightings: soft and local (window around `centers`, default the absolute query position
q_offset + i; `gaussian=True` multiplies the normalised weights by exp(-(j - c)² / 2σ²),
which enters only acc, not l). Hard (argmax) weighting is not offered. Key blocks that a
causal or local window cannot reach are skipped (`lax.cond`).

Dropout on the weights uses one key per (query block, key block), folded from `dropout_rng`:
the pattern depends on the chunk sizes and is not bit-identical to the reference's
(same distribution: each weight kept with probability 1 - rate and scaled by 1/(1 - rate)).
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import jax
import jax.numpy as jnp

from transformer.attention import compute_scores, weight_dropout
from transformer.attention_config import AttentionConfig
from transformer.masks import as_4d_mask, as_centers

Array = jnp.ndarray

_NEG = -1e30  # as transformer.attention: masked scores, never -inf (no NaN)
CHUNKED_WEIGHTINGS = ("soft", "local")


def _score_features(
    score: str, q: Array, k: Array, params: Optional[Mapping[str, Array]]
) -> tuple[Array, Array, Optional[Array]]:
  """(qf [b, h, q_len, e], kf [b|1, h, k_len, e], v_a or None): per-position features.

  Block scores are qf · kfᵀ, or with v_a (additive) v_aᵀ tanh(qf + kf).
  """
  # The reference score function checks shapes and parameters (abstractly: nothing computed).
  jax.eval_shape(lambda q, k, p: compute_scores(score, q, k, p), q, k, params)
  p = dict(params or {})
  if score == "dot":
    return q, k, None
  if score == "scaled_dot":
    return q / jnp.sqrt(q.shape[-1]).astype(q.dtype), k, None
  if score == "general":
    return jnp.einsum("bhqd,hde->bhqe", q, p["w"].astype(q.dtype)), k, None
  if score == "additive":
    qa = jnp.einsum("bhqd,hda->bhqa", q, p["w_q"].astype(q.dtype))  # [b, h, q_len, d_a]
    ka = jnp.einsum("bhkd,hda->bhka", k, p["w_k"].astype(k.dtype))  # [b, h, k_len, d_a]
    return qa, ka, p["v_a"]
  # location: key j's "feature" is column j of W [h, d_q, max_len] -> kf [1, h, k_len, d_q]
  w = p["w"][:, :, : k.shape[2]].astype(q.dtype)
  return q, jnp.swapaxes(w, 1, 2)[None], None


def _block_scores(qf: Array, kf: Array, v_a: Optional[Array]) -> Array:
  """[b, h, qc, e] x [b|1, h, kc, e] -> scores [b, h, qc, kc] in float32."""
  if v_a is None:
    return jnp.matmul(qf, jnp.swapaxes(kf, -1, -2)).astype(jnp.float32)
  hidden = jnp.tanh(qf[:, :, :, None, :] + kf[:, :, None, :, :])  # [b, h, qc, kc, d_a]
  return jnp.einsum("bhqka,ha->bhqk", hidden, v_a.astype(hidden.dtype)).astype(jnp.float32)


def _pad_to(x: Array, axis: int, length: int, value=0) -> Array:
  if x.shape[axis] == length:
    return x
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, length - x.shape[axis])
  return jnp.pad(x, pad, constant_values=value)


def _block(x: Array, axis: int, start, size: int) -> Array:
  """x[..., start:start + size, ...] along `axis`, unless x is broadcast (size 1) there."""
  if x.shape[axis] == 1:
    return x
  return jax.lax.dynamic_slice_in_dim(x, start, size, axis)


def chunked_attention(
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
) -> Array:
  """Attention output [b, h, q_len, d_v] in O(length) memory (see the module docstring).

  Settings from `cfg` (score, weighting soft or local, window, gaussian, dropout_rate, chunk
  sizes; its `implementation` is not read); the other arguments as in
  `transformer.attention_impl.attend` (which returns no weights from here either).
  """
  if cfg.weighting not in CHUNKED_WEIGHTINGS:
    raise ValueError(
        f"attention implementation 'chunked' does not support weighting={cfg.weighting!r} "
        "(argmax over all keys, with a straight-through softmax); use 'reference'."
    )
  if v.ndim != 4 or v.shape[:3] != k.shape[:3]:
    raise ValueError(
        f"chunked attention: v must be [batch, heads, k_len, d_v] matching k{k.shape[:3]}, "
        f"got {v.shape}."
    )
  window, gaussian, dropout_rate = cfg.window, cfg.gaussian, cfg.dropout_rate
  qf, kf, v_a = _score_features(cfg.score, q, k, score_params)
  b, h, q_len, _ = q.shape
  k_len, d_v = k.shape[2], v.shape[-1]
  mask = as_4d_mask(mask, (b, h, q_len, k_len))
  if q_len == 0 or k_len == 0:  # no queries, or nothing to attend to: zeros, as the reference
    return jnp.zeros((b, h, q_len, d_v), v.dtype)

  qc, kc = min(cfg.query_chunk_size, q_len), min(cfg.key_chunk_size, k_len)
  nq, nk = -(-q_len // qc), -(-k_len // kc)
  qf = _pad_to(qf, 2, nq * qc)
  kf, v = _pad_to(kf, 2, nk * kc), _pad_to(v, 2, nk * kc)
  if mask is not None:  # pad the axes it has in full: extra keys masked, extra queries dropped
    mask = mask if mask.shape[3] == 1 else _pad_to(mask, 3, nk * kc, False)
    mask = mask if mask.shape[2] == 1 else _pad_to(mask, 2, nq * qc, True)
  local = cfg.weighting == "local"
  if local and centers is not None:
    centers = jnp.pad(as_centers(centers, q_len), ((0, 0), (0, nq * qc - q_len)), mode="edge")
  use_dropout = dropout_rate > 0.0 and dropout_rng is not None
  sigma = max(window or 0, 1) / 2.0

  def kv_step(carry, ki, q_start, qf_blk, c_blk, blocks):
    """One key block: blocks = (kf [b|1, h, kc, e], v [b, h, kc, d_v], mask or None)."""
    kf_blk, v_blk, mask_blk = blocks
    acc, m, l = carry  # [b, h, qc, d_v], [b, h, qc], [b, h, qc] float32
    k_start = ki * kc
    j = k_start + jnp.arange(kc)  # absolute key positions [kc]
    s = _block_scores(qf_blk, kf_blk, v_a)  # [b, h, qc, kc]
    valid = (j < k_len)[None, None, None, :]
    if causal:
      i_abs = q_offset + q_start + jnp.arange(qc)
      valid = valid & (j[None, :] <= i_abs[:, None])[None, None]
    if c_blk is not None:  # local window [cb|1, 1, qc, 1]
      valid = valid & (jnp.abs(j.astype(jnp.float32) - c_blk) <= window)
    if mask_blk is not None:
      valid = valid & mask_blk
    s = jnp.where(valid, s, _NEG)
    m_new = jax.lax.stop_gradient(jnp.maximum(m, jnp.max(s, axis=-1)))  # any m is exact
    p = jnp.where(valid, jnp.exp(s - m_new[..., None]), 0.0)
    alpha = jnp.exp(m - m_new)
    l = l * alpha + jnp.sum(p, axis=-1)
    used = p
    if gaussian and c_blk is not None:
      used = used * jnp.exp(-((j.astype(jnp.float32) - c_blk) ** 2) / (2 * sigma**2))
    if use_dropout:
      rng = jax.random.fold_in(jax.random.fold_in(dropout_rng, q_start // qc), ki)
      used = weight_dropout(used, dropout_rate, rng)
    pv = jnp.einsum(
        "bhqk,bhkd->bhqd",
        used.astype(v_blk.dtype),
        v_blk,
        preferred_element_type=jnp.float32,
    )
    return (acc * alpha[..., None] + pv, m_new, l), None

  def reachable(k_start, q_start, c_blk):
    """False when no key of the block can be visible from the query block (skip it)."""
    ok = jnp.array(True)
    if causal:
      ok = ok & (k_start <= q_offset + q_start + qc - 1)
    if c_blk is not None:
      ok = ok & (k_start - window <= jnp.max(c_blk)) & (k_start + kc - 1 + window >= jnp.min(c_blk))
    return ok

  def q_block(qi, consts):
    qf, kf, v, mask, centers = consts
    q_start = qi * qc
    qf_blk = jax.lax.dynamic_slice_in_dim(qf, q_start, qc, 2)
    mask_q = None if mask is None else _block(mask, 2, q_start, qc)
    c_blk = None
    if local:
      c = (
          q_start + q_offset + jnp.arange(qc, dtype=jnp.float32)
          if centers is None
          else jax.lax.dynamic_slice_in_dim(centers, q_start, qc, 1)
      )
      c_blk = c.reshape((-1, 1, qc, 1)).astype(jnp.float32)
    step = jax.checkpoint(kv_step, prevent_cse=False)

    def body(carry, ki):
      # Slice the key block here, not inside the cond: operands of a cond become per-step
      # residuals of the backward pass, and whole k / v there would cost O(length²).
      k_start = ki * kc
      blocks = (
          _block(kf, 2, k_start, kc),
          _block(v, 2, k_start, kc),
          None if mask_q is None else _block(mask_q, 3, k_start, kc),
      )
      args = (carry, ki, q_start, qf_blk, c_blk, blocks)
      if not causal and c_blk is None:
        return step(*args)
      skip = lambda *a: (a[0], None)
      return jax.lax.cond(reachable(ki * kc, q_start, c_blk), step, skip, *args)

    init = (
        jnp.zeros((b, h, qc, d_v), jnp.float32),
        jnp.full((b, h, qc), _NEG, jnp.float32),
        jnp.zeros((b, h, qc), jnp.float32),
    )
    (acc, _, l), _ = jax.lax.scan(body, init, jnp.arange(nk))
    return acc / jnp.where(l > 0.0, l, 1.0)[..., None]  # rows without keys: acc = 0 -> 0

  q_block = jax.checkpoint(q_block, prevent_cse=False)
  consts = (qf, kf, v, mask, centers)
  _, out = jax.lax.scan(lambda _, qi: (None, q_block(qi, consts)), None, jnp.arange(nq))
  out = jnp.moveaxis(out, 0, 2).reshape((b, h, nq * qc, d_v))[:, :, :q_len]
  return out.astype(v.dtype)
