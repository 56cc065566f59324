"""Positional encodings vs NumPy loops of the papers' formulas; length limits; decoding."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    apply_rope,
    sinusoidal_encoding,
)


def _rand(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def np_sinusoidal(length, d_model):
  """Vaswani et al. 2017 §3.5, one entry at a time."""
  pe = np.zeros((length, d_model))
  for pos in range(length):
    for i in range(d_model // 2):
      pe[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d_model))
      pe[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d_model))
  return pe


def np_rope(x, positions):
  """RoFormer: rotate each pair (x_2i, x_2i+1) at position m by m * 10000^(-2i/d)."""
  out = np.zeros_like(x, dtype=np.float64)
  b_, h_, n_, d_ = x.shape
  for b in range(b_):
    for h in range(h_):
      for n in range(n_):
        m = positions[b][n] if np.ndim(positions) == 2 else positions[n]
        for i in range(d_ // 2):
          theta = m * 10000.0 ** (-2 * i / d_)
          c, s = math.cos(theta), math.sin(theta)
          x0, x1 = float(x[b, h, n, 2 * i]), float(x[b, h, n, 2 * i + 1])
          out[b, h, n, 2 * i] = x0 * c - x1 * s
          out[b, h, n, 2 * i + 1] = x0 * s + x1 * c
  return out


def test_sinusoidal_matches_paper_formula():
  np.testing.assert_allclose(sinusoidal_encoding(50, 10), np_sinusoidal(50, 10), atol=1e-6)


def test_sinusoidal_module_adds_the_table():
  x = _rand(0, 2, 7, 6)
  module = SinusoidalPositionalEncoding(max_len=16)
  variables = module.init(jax.random.key(0), x)
  assert variables == {}  # no parameters
  out = module.apply(variables, x)
  np.testing.assert_allclose(out, x + np_sinusoidal(7, 6)[None], atol=1e-6)


def test_learned_embedding_adds_its_table():
  x = _rand(1, 2, 5, 4)
  module = LearnedPositionalEmbedding(max_len=9)
  params = module.init(jax.random.key(0), x)["params"]
  table = np.asarray(params["embedding"])
  assert table.shape == (9, 4) and np.abs(table).max() > 0
  np.testing.assert_allclose(module.apply({"params": params}, x), x + table[None, :5], atol=1e-6)


@pytest.mark.parametrize(
    "module", [SinusoidalPositionalEncoding(max_len=8), LearnedPositionalEmbedding(max_len=8)]
)
def test_too_long_sequence_names_the_lengths(module):
  with pytest.raises(ValueError, match=r"length 9 .*max_len=8"):
    module.init(jax.random.key(0), jnp.zeros((1, 9, 4)))


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="even d_model, got d_model=5"):
    sinusoidal_encoding(4, 5)
  with pytest.raises(ValueError, match=r"\[batch, len, d_model\], got shape \(3, 4\)"):
    SinusoidalPositionalEncoding(max_len=8).init(jax.random.key(0), jnp.zeros((3, 4)))
  with pytest.raises(ValueError, match="even feature width, got d=3"):
    apply_rope(jnp.zeros((1, 1, 2, 3)))


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
def test_decode_one_position_per_call_equals_full(cls):
  x = _rand(2, 2, 6, 4)
  module = cls(max_len=10)
  variables = module.init(jax.random.key(0), x, decode=True)  # creates cache_index
  params = {k: v for k, v in variables.items() if k != "cache"}
  cache = variables["cache"]
  full = module.apply(params, x)
  for t in range(6):
    step, mutated = module.apply(
        {**params, "cache": cache}, x[:, t : t + 1], decode=True, mutable=["cache"]
    )
    cache = mutated["cache"]
    np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-6)
  assert int(cache["cache_index"]) == 6
  with pytest.raises(ValueError, match="one position per call, got sequence length 2"):
    module.apply({**params, "cache": cache}, x[:, :2], decode=True, mutable=["cache"])


def test_rope_matches_pairwise_rotation_loop():
  x = _rand(3, 2, 2, 5, 6)  # [b, h, len, d]
  np.testing.assert_allclose(apply_rope(x), np_rope(x, np.arange(5)), atol=1e-5)
  positions = np.array([[3, 4, 5, 6, 7], [0, 2, 4, 6, 8]])
  np.testing.assert_allclose(apply_rope(x, positions), np_rope(x, positions), atol=1e-5)


def test_rope_keeps_dtype_and_norm():
  x = jnp.asarray(_rand(4, 1, 1, 3, 8), jnp.bfloat16)
  out = apply_rope(x, jnp.array([5, 9, 100]))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(
      np.linalg.norm(np.asarray(out, np.float32), axis=-1),
      np.linalg.norm(np.asarray(x, np.float32), axis=-1),
      rtol=2e-2,
  )


@settings(max_examples=20, deadline=None)
@given(
    m=st.integers(0, 60), n=st.integers(0, 60), shift=st.integers(-20, 60), seed=st.integers(0, 99)
)
def test_rope_scores_depend_only_on_relative_position(m, n, shift, seed):
  """<R(m) q, R(n) k> = <R(m+s) q, R(n+s) k>: RoPE encodes m - n only."""
  shift = max(shift, -min(m, n))
  q, k = _rand(seed, 1, 1, 1, 8), _rand(seed + 100, 1, 1, 1, 8)
  score = lambda a, b: float(jnp.sum(apply_rope(q, jnp.array([a])) * apply_rope(k, jnp.array([b]))))  # noqa: E731
  assert score(m, n) == pytest.approx(score(m + shift, n + shift), abs=1e-4)
