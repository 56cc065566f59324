"""Positional information: sinusoidal (paper), learned absolute, and rotary (RoPE).

* `sinusoidal_encoding` / `SinusoidalPositionalEncoding` — Vaswani et al. 2017, §3.5:
  PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)),
  added to the token embeddings.
* `LearnedPositionalEmbedding` — a trained table [max_len, d_model] added to the embeddings.
* `apply_rope` — rotary position embedding (Su et al. 2021, RoFormer): each pair of features
  (x_2i, x_2i+1) of a query/key at position m is rotated by the angle m · θ_i,
  θ_i = 10000^(-2i/d_k), so that q_mᵀ k_n depends on positions only through m - n.
  RoPE is applied to q and k inside attention (see `MultiHeadAttention(rope=True)`).

The two additive encodings support incremental decoding (`decode=True`): the module keeps a
`cache_index` in the 'cache' collection and adds the encoding of that one position per call.
A sequence longer than `max_len` raises a ValueError naming both lengths.
"""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray

ROPE_BASE = 10000.0


def check_length(length: int, max_len: int, what: str = "sequence") -> None:
  """Raises ValueError if a (static) `length` exceeds the supported `max_len`."""
  if length > max_len:
    raise ValueError(
        f"{what} length {length} exceeds the supported maximum max_len={max_len}; "
        f"use shorter inputs or a config with max_len >= {length}."
    )


def sinusoidal_encoding(length: int, d_model: int, base: float = 10000.0) -> np.ndarray:
  """The paper's sinusoidal table, float32 NumPy `[length, d_model]` (d_model even)."""
  if d_model % 2:
    raise ValueError(f"sinusoidal_encoding needs an even d_model, got d_model={d_model}.")
  pos = np.arange(length, dtype=np.float64)[:, None]  # [length, 1]
  two_i = np.arange(0, d_model, 2, dtype=np.float64)[None, :]  # [1, d_model/2]
  angles = pos / np.power(base, two_i / d_model)  # [length, d_model/2]
  table = np.zeros((length, d_model), np.float64)
  table[:, 0::2] = np.sin(angles)
  table[:, 1::2] = np.cos(angles)
  return table.astype(np.float32)


def _add_table(module: nn.Module, x: Array, table: Array, decode: bool) -> Array:
  """x [b, len, d] + table[positions]; in decode mode one position per call from a cache index."""
  length = x.shape[1]
  if decode:
    is_initialized = module.has_variable("cache", "cache_index")
    index = module.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if is_initialized:
      if length != 1:
        raise ValueError(
            f"{type(module).__name__}: decode=True takes one position per call, "
            f"got sequence length {length}."
        )
      i = index.value
      index.value = i + 1
      pe = jax.lax.dynamic_slice_in_dim(table, i, 1, axis=0)  # [1, d]
      return x + pe[None].astype(x.dtype)
  return x + table[None, :length].astype(x.dtype)


def _check_input(module: nn.Module, x: Array, max_len: int) -> None:
  if x.ndim != 3:
    raise ValueError(
        f"{type(module).__name__}: expected inputs [batch, len, d_model], got shape {x.shape}."
    )
  check_length(x.shape[1], max_len)


class SinusoidalPositionalEncoding(nn.Module):
  """Adds the fixed sinusoidal encoding (no parameters). x [b, len, d] -> [b, len, d]."""

  max_len: int = 512
  base: float = 10000.0

  @nn.compact
  def __call__(self, x: Array, *, decode: bool = False) -> Array:
    _check_input(self, x, self.max_len)
    table = jnp.asarray(sinusoidal_encoding(self.max_len, x.shape[-1], self.base))
    return _add_table(self, x, table, decode)


class LearnedPositionalEmbedding(nn.Module):
  """Adds a learned absolute position embedding, param 'embedding' [max_len, d_model]."""

  max_len: int = 512
  embedding_init: Callable = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, x: Array, *, decode: bool = False) -> Array:
    _check_input(self, x, self.max_len)
    table = self.param("embedding", self.embedding_init, (self.max_len, x.shape[-1]))
    return _add_table(self, x, table, decode)


def rope_angles(positions: Array, d: int, base: float = ROPE_BASE) -> Array:
  """Rotation angles m · θ_i, θ_i = base^(-2i/d): positions [...] -> [..., d/2] float32."""
  if d % 2:
    raise ValueError(f"RoPE needs an even feature width, got d={d}.")
  inv_freq = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [d/2]
  return jnp.asarray(positions, jnp.float32)[..., None] * inv_freq


def apply_rope(x: Array, positions: Optional[Array] = None, *, base: float = ROPE_BASE) -> Array:
  """Rotates feature pairs (x_2i, x_2i+1) of x [batch, heads, len, d] by positions · θ_i.

  `positions`: [len] or [batch, len] (default 0..len-1). Computed in float32, returned in
  x's dtype:  x'_2i = x_2i cos − x_2i+1 sin,  x'_2i+1 = x_2i sin + x_2i+1 cos.
  """
  if x.ndim != 4:
    raise ValueError(f"apply_rope: x must be [batch, heads, len, d], got shape {x.shape}.")
  length, d = x.shape[-2:]
  if positions is None:
    positions = jnp.arange(length)
  positions = jnp.asarray(positions)
  if positions.ndim == 2:
    positions = positions[:, None, :]  # [batch, 1, len], broadcast over heads
  elif positions.ndim != 1:
    raise ValueError(f"apply_rope: positions must be [len] or [batch, len], got {positions.shape}.")
  angles = rope_angles(positions, d, base)  # [..., len, d/2]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  x32 = x.astype(jnp.float32)
  x_even, x_odd = x32[..., 0::2], x32[..., 1::2]  # [b, h, len, d/2]
  rot_even = x_even * cos - x_odd * sin
  rot_odd = x_even * sin + x_odd * cos
  out = jnp.stack([rot_even, rot_odd], axis=-1).reshape(x.shape)  # re-interleave pairs
  return out.astype(x.dtype)
