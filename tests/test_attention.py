"""Functional attention core vs independent NumPy references written with explicit loops."""

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from transformer import attention as A
from transformer.attention_config import SCORES
from transformer.masks import causal_mask, padding_mask

B, H, Q, K, D = 2, 3, 4, 5, 6


def _rand(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture
def qkv():
  return _rand(0, B, H, Q, D), _rand(1, B, H, K, D), _rand(2, B, H, K, 7)


# ---------------------------------------------------------------- NumPy loop references


def np_scores(score, q, k, p):
  b_, h_, q_, d_ = q.shape
  k_ = k.shape[2]
  out = np.zeros((b_, h_, q_, k_), np.float64)
  for b in range(b_):
    for h in range(h_):
      for i in range(q_):
        for j in range(k_):
          qi, kj = q[b, h, i].astype(np.float64), k[b, h, j].astype(np.float64)
          if score == "dot":
            s = sum(qi[d] * kj[d] for d in range(d_))
          elif score == "scaled_dot":
            s = sum(qi[d] * kj[d] for d in range(d_)) / math.sqrt(d_)
          elif score == "general":
            w = p["w"][h]
            s = sum(qi[a] * w[a, c] * kj[c] for a in range(d_) for c in range(k.shape[-1]))
          elif score == "additive":
            d_a = p["v_a"].shape[-1]
            s = 0.0
            for a in range(d_a):
              pre = sum(qi[d] * p["w_q"][h, d, a] for d in range(d_)) + sum(
                  kj[d] * p["w_k"][h, d, a] for d in range(k.shape[-1])
              )
              s += p["v_a"][h, a] * math.tanh(pre)
          elif score == "location":
            s = sum(qi[d] * p["w"][h, d, j] for d in range(d_))
          out[b, h, i, j] = s
  return out


def np_softmax_row(row, keep):
  idx = [j for j in range(len(row)) if keep[j]]
  out = np.zeros(len(row))
  if not idx:
    return out
  m = max(row[j] for j in idx)
  z = sum(math.exp(row[j] - m) for j in idx)
  for j in idx:
    out[j] = math.exp(row[j] - m) / z
  return out


def np_weights(scores, mask, weighting, window=None):
  b_, h_, q_, k_ = scores.shape
  mask = np.broadcast_to(np.ones((1, 1, 1, 1), bool) if mask is None else mask, scores.shape)
  out = np.zeros_like(scores, dtype=np.float64)
  for b in range(b_):
    for h in range(h_):
      for i in range(q_):
        keep = [bool(mask[b, h, i, j]) for j in range(k_)]
        if weighting == "local":
          keep = [keep[j] and abs(j - i) <= window for j in range(k_)]
        if weighting == "hard":
          idx = [j for j in range(k_) if keep[j]]
          if idx:
            best = idx[0]
            for j in idx:
              if scores[b, h, i, j] > scores[b, h, i, best]:
                best = j
            out[b, h, i, best] = 1.0
        else:
          out[b, h, i] = np_softmax_row(scores[b, h, i], keep)
  return out


def np_attend(weights, v):
  b_, h_, q_, k_ = weights.shape
  out = np.zeros((b_, h_, q_, v.shape[-1]))
  for b in range(b_):
    for h in range(h_):
      for i in range(q_):
        for j in range(k_):
          out[b, h, i] += weights[b, h, i, j] * v[b, h, j]
  return out


# ---------------------------------------------------------------- score functions


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "additive", "location"])
def test_score_functions_match_numpy_loops(score, qkv):
  q, k, _ = qkv
  p = A.init_score_params(score, jax.random.PRNGKey(3), H, D, d_a=5, max_len=9)
  p_np = {n: np.asarray(x) for n, x in p.items()}
  got = A.compute_scores(score, jnp.asarray(q), jnp.asarray(k), p)
  np.testing.assert_allclose(got, np_scores(score, q, k, p_np), rtol=1e-4, atol=1e-4)


def test_score_functions_are_the_ones_the_config_allows():
  """AttentionConfig checks the names; transformer.attention implements them."""
  assert set(A.SCORE_FUNCTIONS) == set(A.SCORE_PARAMS) == set(SCORES)


def test_location_scores_depend_on_query_only(qkv):
  q, k, _ = qkv
  p = A.init_score_params("location", jax.random.PRNGKey(0), H, D, max_len=K)
  s1 = A.compute_scores("location", q, k, p)
  s2 = A.compute_scores("location", q, k * 10 + 3, p)
  np.testing.assert_array_equal(s1, s2)


def test_general_allows_different_query_and_key_widths():
  q, k = _rand(0, 1, 2, 3, 4), _rand(1, 1, 2, 5, 6)
  w = _rand(2, 2, 4, 6)
  got = A.general_scores(q, k, w)
  np.testing.assert_allclose(got, np_scores("general", q, k, {"w": w}), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- weightings and attention


@pytest.mark.parametrize("weighting", ["soft", "hard", "local"])
@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "additive", "location"])
def test_attention_matches_numpy_loops(score, weighting, qkv):
  q, k, v = qkv
  p = A.init_score_params(score, jax.random.PRNGKey(7), H, D, max_len=K)
  mask = np.asarray(padding_mask(lengths=jnp.array([5, 3]), max_len=K))
  out, w = A.attention(
      jnp.asarray(q),
      jnp.asarray(k),
      jnp.asarray(v),
      score=score,
      score_params=p,
      weighting=weighting,
      mask=mask,
      window=1,
  )
  ref_scores = np_scores(score, q, k, {n: np.asarray(x) for n, x in p.items()})
  ref_w = np_weights(ref_scores, mask, weighting, window=1)
  assert w.dtype == jnp.float32 and w.shape == (B, H, Q, K)
  np.testing.assert_allclose(w, ref_w, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out, np_attend(ref_w, v), rtol=1e-4, atol=1e-4)


def test_local_weights_around_given_centers():
  scores = _rand(0, 1, 1, 2, 8)
  centers = np.array([[5.0, 1.2]])
  w = A.local_weights(jnp.asarray(scores), window=1, centers=centers)
  for i, c in enumerate(centers[0]):
    keep = [abs(j - c) <= 1 for j in range(8)]
    np.testing.assert_allclose(w[0, 0, i], np_softmax_row(scores[0, 0, i], keep), atol=1e-6)


def test_local_gaussian_multiplies_by_paper_gaussian():
  scores = _rand(0, 1, 1, 3, 6)
  w = np.asarray(A.local_weights(jnp.asarray(scores), window=2, gaussian=True))
  for i in range(3):
    keep = [abs(j - i) <= 2 for j in range(6)]
    ref = np_softmax_row(scores[0, 0, i], keep)
    ref = [ref[j] * math.exp(-((j - i) ** 2) / (2 * 1.0**2)) for j in range(6)]
    np.testing.assert_allclose(w[0, 0, i], ref, atol=1e-6)


def test_hard_straight_through_has_soft_gradient():
  scores = jnp.asarray(_rand(0, 1, 1, 2, 5))
  cot = jnp.asarray(_rand(1, 1, 1, 2, 5))
  g_hard = jax.grad(lambda s: jnp.sum(A.hard_weights(s) * cot))(scores)
  g_st = jax.grad(lambda s: jnp.sum(A.hard_weights(s, straight_through=True) * cot))(scores)
  g_soft = jax.grad(lambda s: jnp.sum(A.soft_weights(s) * cot))(scores)
  np.testing.assert_array_equal(g_hard, 0.0)
  np.testing.assert_allclose(g_st, g_soft, atol=1e-7)
  fwd = A.hard_weights(scores, straight_through=True)
  np.testing.assert_allclose(fwd, A.hard_weights(scores), atol=1e-7)


def test_fully_masked_rows_are_zero_and_finite(qkv):
  q, k, v = qkv
  mask = np.ones((B, 1, Q, K), bool)
  mask[0, :, 1, :] = False  # query 1 of example 0 sees nothing
  mask[1, :, :, :] = False  # example 1 sees nothing at all
  for weighting in ["soft", "hard", "local"]:
    out, w = A.attention(q, k, v, weighting=weighting, mask=mask, window=2)
    assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(w)).all()
    np.testing.assert_array_equal(w[0, :, 1], 0.0)
    np.testing.assert_array_equal(w[1], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_allclose(np.asarray(w[0, :, 0]).sum(-1), 1.0, atol=1e-6)
  grads = jax.grad(lambda q: A.attention(q, k, v, mask=mask)[0].sum())(jnp.asarray(q))
  assert np.isfinite(np.asarray(grads)).all()


def test_padded_keys_get_zero_weight_and_pad_content_is_irrelevant(qkv):
  q, k, v = qkv
  mask = padding_mask(lengths=jnp.array([3, 5]), max_len=K)
  out1, w = A.attention(q, k, v, mask=mask)
  np.testing.assert_array_equal(w[0, :, :, 3:], 0.0)
  k2, v2 = k.copy(), v.copy()
  k2[0, :, 3:] = 99.0
  v2[0, :, 3:] = -99.0
  out2, _ = A.attention(q, k2, v2, mask=mask)
  np.testing.assert_allclose(out1, out2, atol=1e-6)


def test_causal_attention_ignores_future():
  x = _rand(0, 1, 2, 6, 4)
  mask = causal_mask(6)
  out1, w = A.attention(x, x, x, mask=mask)
  assert np.all(np.triu(np.asarray(w[0, 0]), 1) == 0)
  y = x.copy()
  y[:, :, 4:] += 5.0
  out2, _ = A.attention(y, y, y, mask=mask)
  np.testing.assert_allclose(out1[:, :, :4], out2[:, :, :4], atol=1e-6)


def test_bf16_inputs_softmax_in_float32(qkv):
  q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in qkv)
  out, w = A.attention(q, k, v)
  assert w.dtype == jnp.float32 and out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-5)


def test_dropout_on_weights_is_applied_and_returned_weights_are_clean(qkv):
  q, k, v = qkv
  out0, w0 = A.attention(q, k, v)
  out1, w1 = A.attention(q, k, v, dropout_rate=0.5, dropout_rng=jax.random.PRNGKey(0))
  np.testing.assert_array_equal(w0, w1)
  assert not np.allclose(out0, out1)


# ---------------------------------------------------------------- errors


def test_errors_name_the_values(qkv):
  q, k, v = qkv
  with pytest.raises(ValueError, match="d_q=6 != key width d_k=3"):
    A.attention(q, k[..., :3], v)
  # The settings are checked by the AttentionConfig that `attention` builds.
  with pytest.raises(ValueError, match="AttentionConfig: unknown score 'cosine'"):
    A.attention(q, k, v, score="cosine")
  with pytest.raises(ValueError, match="AttentionConfig: unknown weighting 'sparse'"):
    A.attention(q, k, v, weighting="sparse")
  with pytest.raises(ValueError, match=r"Mask shape \(2, 1, 1, 3\) does not broadcast"):
    A.attention(q, k, v, mask=np.ones((2, 1, 1, 3), bool))
  with pytest.raises(ValueError, match="needs parameter 'w'"):
    A.attention(q, k, v, score="general")
  with pytest.raises(ValueError, match="k_len=5 exceeds the supported max_len=4"):
    p = A.init_score_params("location", jax.random.PRNGKey(0), H, D, max_len=4)
    A.attention(q, k, v, score="location", score_params=p)


# ---------------------------------------------------------------- jit and gradients


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "additive", "location"])
def test_jit_equals_eager_and_gradients_check(score, qkv):
  q, k, v = (jnp.asarray(x, jnp.float64) if jax.config.x64_enabled else jnp.asarray(x) for x in qkv)
  p = A.init_score_params(score, jax.random.PRNGKey(1), H, D, max_len=K)
  mask = padding_mask(lengths=jnp.array([4, 5]), max_len=K)

  def f(q, k, v, p):
    return A.attention(q, k, v, score=score, score_params=p, mask=mask)[0]

  np.testing.assert_allclose(jax.jit(f)(q, k, v, p), f(q, k, v, p), rtol=1e-5, atol=1e-5)
  check_grads(f, (q, k, v, p), order=1, modes=["rev"], atol=5e-2, rtol=5e-2, eps=1e-2)


# ---------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    q_len=st.integers(1, 5),
    k_len=st.integers(1, 6),
    data=st.data(),
)
def test_rows_sum_to_one_or_zero_for_any_mask(b, h, q_len, k_len, data):
  mask = data.draw(hnp.arrays(bool, (b, 1, q_len, k_len)))
  q = _rand(0, b, h, q_len, 4)
  k = _rand(1, b, h, k_len, 4)
  _, w = A.attention(q, k, k, mask=mask)
  sums = np.asarray(w).sum(-1)
  any_key = np.broadcast_to(mask.any(-1), sums.shape)
  np.testing.assert_allclose(sums[any_key], 1.0, atol=1e-5)
  np.testing.assert_array_equal(sums[~any_key], 0.0)
  assert (np.asarray(w)[~np.broadcast_to(mask, w.shape)] == 0).all()
