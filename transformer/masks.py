"""Attention masks as boolean arrays: True means "this query may attend to this key".

Every mask broadcasts against attention scores shaped `[batch, heads, q_len, k_len]`:

* `padding_mask`  -> `[batch, 1, 1, k_len]`   (keys that are real tokens)
* `causal_mask`   -> `[1, 1, q_len, k_len]`   (keys at or before the query)
* `local_mask`    -> `[1|batch, 1, q_len, k_len]` (keys within ±window of a centre)

`local_m_centers` gives local-m cross-attention's window centres: the target position, clamped
to the last real source token.

`combine_masks` ANDs any number of them, ignoring `None`; `as_4d_mask` checks that a mask
broadcasts to the scores; `as_centers` checks local-window centres.
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

Array = jnp.ndarray


def padding_mask(
    lengths: Optional[Array] = None,
    ids: Optional[Array] = None,
    *,
    max_len: Optional[int] = None,
    pad_id: int = 0,
) -> Array:
  """Mask of real (non-pad) keys, `[batch, 1, 1, k_len]`.

  Give either `lengths` (`[batch]` ints, with `max_len`) or token `ids` (`[batch, k_len]`,
  positions equal to `pad_id` are padding).
  """
  if (lengths is None) == (ids is None):
    raise ValueError("padding_mask needs exactly one of `lengths` or `ids`.")
  if ids is not None:
    ids = jnp.asarray(ids)
    if ids.ndim != 2:
      raise ValueError(f"padding_mask: ids must be [batch, len], got shape {ids.shape}.")
    return (ids != pad_id)[:, None, None, :]
  lengths = jnp.asarray(lengths)
  if lengths.ndim != 1:
    raise ValueError(f"padding_mask: lengths must be [batch], got shape {lengths.shape}.")
  if max_len is None:
    raise ValueError("padding_mask: `max_len` is required with `lengths`.")
  positions = jnp.arange(max_len)
  return (positions[None, :] < lengths[:, None])[:, None, None, :]


def causal_mask(q_len: int, k_len: Optional[int] = None) -> Array:
  """Backward-looking mask `[1, 1, q_len, k_len]`.

  Queries are the last `q_len` of `k_len` positions, so query i sees keys
  j <= i + (k_len - q_len). With q_len == k_len this is the usual lower triangle.
  """
  k_len = q_len if k_len is None else k_len
  if k_len < q_len:
    raise ValueError(f"causal_mask: k_len ({k_len}) must be >= q_len ({q_len}).")
  i = jnp.arange(q_len)[:, None] + (k_len - q_len)
  j = jnp.arange(k_len)[None, :]
  return (j <= i)[None, None]


def local_mask(
    q_len: int,
    k_len: int,
    window: int,
    centers: Optional[Array] = None,
) -> Array:
  """Keys within ±`window` of a centre position, `[1|batch, 1, q_len, k_len]`.

  `centers` (`[q_len]` or `[batch, q_len]`, may be fractional, e.g. Luong's predicted
  alignment p_t) defaults to the query positions 0..q_len-1.
  """
  if window is None or window < 0:
    raise ValueError(f"local_mask: window must be >= 0, got {window}.")
  if centers is None:
    centers = jnp.arange(q_len, dtype=jnp.float32)
  centers = as_centers(centers, q_len)  # [1|batch, q_len]
  j = jnp.arange(k_len, dtype=jnp.float32)
  within = jnp.abs(j[None, None, :] - centers[:, :, None]) <= window  # [1|batch, q_len, k_len]
  return within[:, None]


def as_centers(centers: Array, q_len: int) -> Array:
  """Window centres `[q_len]` or `[batch, q_len]` as float32 `[1|batch, q_len]`."""
  centers = jnp.asarray(centers, jnp.float32)
  if centers.ndim not in (1, 2) or centers.shape[-1] != q_len:
    raise ValueError(
        f"centers must be [q_len] or [batch, q_len] with q_len={q_len}, got shape {centers.shape}."
    )
  return centers.reshape((-1, q_len))


def local_m_centers(q_positions: Array, key_mask: Optional[Array], k_len: int) -> Array:
  """Luong's local-m centres p_t = t, clamped to the last real key: `[1|batch, q_len]` float32.

  Without the clamp a target longer than its source by more than the window sees no source
  token at all (an all-zero context vector). `q_positions`: `[q_len]` target positions;
  `key_mask`: the keys' mask, `[batch|1, 1, 1|q_len, k_len]` (e.g. `padding_mask`; a key is
  real when any query may see it), or None: all `k_len` keys are real.
  """
  t = jnp.asarray(q_positions, jnp.float32).reshape((1, -1))  # [1, q_len]
  if key_mask is None:
    return jnp.minimum(t, float(k_len - 1))
  key_mask = jnp.asarray(key_mask, bool)
  if key_mask.ndim != 4 or key_mask.shape[-1] != k_len:
    raise ValueError(
        f"local_m_centers: key_mask must be [batch, 1, 1|q_len, k_len={k_len}], "
        f"got shape {key_mask.shape}."
    )
  real = jnp.any(key_mask, axis=(1, 2))  # [batch, k_len]
  j = jnp.arange(k_len, dtype=jnp.float32)
  last = jnp.max(jnp.where(real, j, 0.0), axis=-1, keepdims=True)  # [batch, 1]
  return jnp.minimum(t, last)


def combine_masks(*masks: Optional[Array]) -> Optional[Array]:
  """Logical AND of the given masks (broadcast); `None` entries are skipped."""
  masks = [jnp.asarray(m, bool) for m in masks if m is not None]
  if not masks:
    return None
  out = masks[0]
  for m in masks[1:]:
    try:
      out = jnp.logical_and(out, m)
    except (ValueError, TypeError) as e:
      raise ValueError(f"combine_masks: shapes {out.shape} and {m.shape} do not broadcast.") from e
  return out


def as_4d_mask(mask: Optional[Array], shape: tuple[int, int, int, int]) -> Optional[Array]:
  """`mask` as a 4-D bool array broadcastable to `shape` [b, h, q_len, k_len] (or None)."""
  if mask is None:
    return None
  mask = jnp.asarray(mask, bool)
  if mask.ndim <= 4:
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  try:
    ok = jnp.broadcast_shapes(mask.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"Mask shape {mask.shape} does not broadcast to scores shape {tuple(shape)} = "
        "[batch, heads, q_len, k_len]."
    )
  return mask
