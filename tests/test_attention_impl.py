"""`attend`'s implementations (fused, chunked) against the reference, plus NumPy loops for chunked.

The reference itself is checked against NumPy loops in tests/test_attention.py.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer.attention import init_score_params
from transformer.attention_config import IMPLEMENTATIONS, AttentionConfig
from transformer.attention_impl import attend, resolve_implementation
from transformer.chunked_attention import chunked_attention
from transformer.masks import padding_mask
from transformer.positional import apply_rope

B, H, D = 2, 3, 8
TOL = dict(rtol=1e-5, atol=1e-5)
CHUNKS = dict(query_chunk_size=4, key_chunk_size=5)  # lengths below are not multiples


# Keywords that are AttentionConfig settings ('centers' is the call's array of centres here).
SETTINGS = {f.name for f in dataclasses.fields(AttentionConfig)} - {"centers"}


def _split(kw):
  """(AttentionConfig of the settings in kw, the other keywords: the call's arguments)."""
  cfg = AttentionConfig(**{n: v for n, v in kw.items() if n in SETTINGS})
  return cfg, {n: v for n, v in kw.items() if n not in SETTINGS}


def _attend(q, k, v, **kw):
  cfg, call = _split(kw)
  return attend(q, k, v, cfg, **call)


def _chunked(q, k, v, **kw):
  cfg, call = _split(kw)
  return chunked_attention(q, k, v, cfg, **call)


def _rand(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _qkv(q_len, k_len, d_v=D):
  return _rand(0, B, H, q_len, D), _rand(1, B, H, k_len, D), _rand(2, B, H, k_len, d_v)


def _out_and_grads(impl, q, k, v, params=None, centers=None, **kw):
  """Output and gradients of a nonlinear loss w.r.t. q, k, v, score params (and centers)."""
  extra = dict(CHUNKS) if impl == "chunked" else {}

  def loss(q, k, v, params, centers):
    out, _ = _attend(
        q, k, v, implementation=impl, score_params=params, centers=centers, **extra, **kw
    )
    return jnp.sum(jnp.sin(3.0 * out)), out

  argnums = (0, 1, 2, 3) + ((4,) if centers is not None else ())
  grads, out = jax.jit(jax.grad(loss, argnums=argnums, has_aux=True))(q, k, v, params, centers)
  return out, grads


def _assert_same(impl, *args, **kw):
  out, grads = _out_and_grads(impl, *args, **kw)
  ref_out, ref_grads = _out_and_grads("reference", *args, **kw)
  np.testing.assert_allclose(out, ref_out, **TOL)
  for g, rg in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, rg, **TOL)
  return out


# Self (q_len == k_len), cross (different lengths), causal, padding (one row fully padded).
PAD = padding_mask(lengths=jnp.array([9, 0]), max_len=13)
CASES = {
    "self": (11, 11, {}),
    "self_padded": (13, 13, dict(mask=PAD)),
    "cross_padded": (7, 13, dict(mask=PAD)),
    "causal": (11, 11, dict(causal=True)),
    "causal_padded": (13, 13, dict(causal=True, mask=PAD)),
    "local": (11, 11, dict(weighting="local", window=2)),
    "local_causal_padded": (13, 13, dict(weighting="local", window=3, causal=True, mask=PAD)),
}


@pytest.mark.parametrize("impl", ["fused", "chunked"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference(impl, case):
  q_len, k_len, kw = CASES[case]
  _assert_same(impl, *_qkv(q_len, k_len), **kw)


@pytest.mark.parametrize("impl", ["fused", "chunked"])
def test_decode_step_with_cache_matches_reference_and_full_pass(impl):
  """One query at position i over a cache of 13 slots (slots > i hold zeros), q_offset traced."""
  q, k, v = _qkv(1, 13)
  i = 6
  k, v = k.at[:, :, i + 1 :].set(0.0), v.at[:, :, i + 1 :].set(0.0)
  step = jax.jit(
      lambda q, k, v, i: _attend(q, k, v, implementation=impl, causal=True, q_offset=i, **CHUNKS)[0]
  )
  out = step(q, k, v, jnp.int32(i))
  ref = _attend(q, k, v, implementation="reference", causal=True, q_offset=i)[0]
  np.testing.assert_allclose(out, ref, **TOL)
  # The same row of a full causal pass over positions 0..i (query i is row i there).
  q_full = jnp.concatenate([_rand(5, B, H, i, D), q], axis=2)
  full = _attend(
      q_full, k[:, :, : i + 1], v[:, :, : i + 1], implementation="reference", causal=True
  )
  np.testing.assert_allclose(out[:, :, 0], full[0][:, :, i], **TOL)
  _assert_same(impl, q, k, v, causal=True, q_offset=i, mask=PAD)


@pytest.mark.parametrize("impl", ["fused", "chunked"])
def test_rope_queries_and_keys(impl):
  """RoPE first (queries at absolute positions 4.., keys at 0..); grads w.r.t. un-rotated q, k."""
  q, k, v = _qkv(9, 13)
  rope_q = lambda q: apply_rope(q, jnp.arange(9) + 4)
  rotated = lambda name: jax.jit(
      jax.value_and_grad(
          lambda q, k, v: jnp.sum(
              jnp.sin(
                  _attend(
                      rope_q(q),
                      apply_rope(k),
                      v,
                      implementation=name,
                      causal=True,
                      q_offset=4,
                      mask=PAD,
                      **(CHUNKS if name == "chunked" else {}),
                  )[0]
              )
          ),
          argnums=(0, 1, 2),
      )
  )
  (got, got_grads), (want, want_grads) = rotated(impl)(q, k, v), rotated("reference")(q, k, v)
  np.testing.assert_allclose(got, want, **TOL)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "additive", "location"])
@pytest.mark.parametrize(
    "kw",
    [dict(causal=True, mask=PAD), dict(weighting="local", window=2, q_offset=3, mask=PAD)],
    ids=["causal_padded", "local_offset_padded"],
)
def test_chunked_every_score_function(score, kw):
  params = init_score_params(score, jax.random.PRNGKey(3), H, D, max_len=20)
  _assert_same("chunked", *_qkv(11, 13), params=params, score=score, **kw)


@pytest.mark.parametrize("gaussian", [False, True])
def test_chunked_local_around_centers(gaussian):
  """Local-p: fractional per-batch centres; gradients w.r.t. the centres too (Gaussian)."""
  centers = jnp.stack([jnp.linspace(0.0, 12.0, 11), jnp.linspace(12.0, 3.0, 11)]) + 0.3
  _assert_same(
      "chunked",
      *_qkv(11, 13),
      score="general",
      params=init_score_params("general", jax.random.PRNGKey(4), H, D),
      weighting="local",
      window=2,
      centers=centers,
      gaussian=gaussian,
      mask=PAD,
  )


@pytest.mark.parametrize("impl", ["fused", "chunked"])
def test_fully_masked_rows_are_zero(impl):
  q, k, v = _qkv(5, 13)
  mask = jnp.ones((B, 1, 5, 13), bool).at[0, :, 2].set(False)  # one row without keys
  out = _assert_same(impl, q, k, v, mask=mask)
  assert np.all(np.asarray(out)[0, :, 2] == 0.0)
  out = _assert_same(impl, q, k, v, mask=PAD[:, :, :, :13])  # batch 1: every row empty
  assert np.all(np.asarray(out)[1] == 0.0)


def test_chunk_sizes_do_not_change_the_result():
  q, k, v = _qkv(11, 13)
  outs = [
      _chunked(q, k, v, causal=True, query_chunk_size=qc, key_chunk_size=kc)
      for qc, kc in [(1, 1), (3, 7), (11, 13), (512, 512)]
  ]
  for o in outs[1:]:
    np.testing.assert_allclose(o, outs[0], **TOL)


# ------------------------------------------------------------------ chunked vs NumPy loops


def np_local_attention(q, k, v, allowed, centers, window, gaussian):
  """Scaled-dot soft/local attention with explicit loops in float64; allowed [b, q, k] bool."""
  b_, h_, q_, d_ = q.shape
  out = np.zeros((b_, h_, q_, v.shape[-1]))
  for b in range(b_):
    for h in range(h_):
      for i in range(q_):
        js = [
            j
            for j in range(k.shape[2])
            if allowed[b, i, j] and (window is None or abs(j - centers[b, i]) <= window)
        ]
        if not js:
          continue
        s = [float(np.dot(q[b, h, i], k[b, h, j])) / math.sqrt(d_) for j in js]
        e = [math.exp(x - max(s)) for x in s]
        for j, ej in zip(js, e):
          w = ej / sum(e)
          if gaussian:
            w *= math.exp(-((j - centers[b, i]) ** 2) / (2 * (max(window, 1) / 2.0) ** 2))
          out[b, h, i] += w * v[b, h, j].astype(np.float64)
  return out


@pytest.mark.parametrize("local", [False, True])
def test_chunked_matches_numpy_loops(local):
  q, k, v = _qkv(11, 13, d_v=5)
  offset, lengths = 2, [13, 6]
  allowed = np.zeros((B, 11, 13), bool)
  for b in range(B):
    for i in range(11):
      allowed[b, i, : min(lengths[b], offset + i + 1)] = True  # padding and causal
  centers = np.array([[0.5 + 1.1 * i for i in range(11)], [12.0 - i for i in range(11)]])
  kw = dict(weighting="local", window=2, centers=centers, gaussian=True) if local else {}
  out = _chunked(
      q,
      k,
      v,
      mask=padding_mask(lengths=jnp.array(lengths), max_len=13),
      causal=True,
      q_offset=offset,
      **CHUNKS,
      **kw,
  )
  want = np_local_attention(
      *map(np.asarray, (q, k, v)), allowed, centers, 2 if local else None, local
  )
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ dropout, dispatch, errors


def test_chunked_dropout_is_unbiased_and_deterministic_per_key():
  q, k, v = _qkv(6, 9)
  run = jax.jit(
      jax.vmap(
          lambda r: _chunked(
              q, k, v, dropout_rate=0.5, dropout_rng=r, query_chunk_size=4, key_chunk_size=4
          )
      )
  )
  outs = run(jax.random.split(jax.random.PRNGKey(0), 2000))
  np.testing.assert_array_equal(outs[0], run(jax.random.split(jax.random.PRNGKey(0), 2000))[0])
  assert not np.allclose(outs[0], outs[1])
  no_dropout = chunked_attention(q, k, v)
  # Mean of 2000 draws: standard error well below 0.05 for these magnitudes.
  np.testing.assert_allclose(outs.mean(0), no_dropout, atol=0.1)


def test_auto_picks_fused_only_where_it_applies():
  q, k, v = _qkv(4, 6)
  pick = lambda **kw: resolve_implementation(_split(kw)[0], q, k, v, **_split(kw)[1])
  assert pick() == "fused"
  assert pick(weighting="local", window=1) == "fused"
  assert pick(need_weights=True) == "reference"
  assert pick(score="additive") == "reference"
  assert pick(weighting="hard") == "reference"
  assert pick(weighting="local", window=1, gaussian=True) == "reference"
  assert pick(dropout_rate=0.1, dropout_rng=jax.random.PRNGKey(0)) == "reference"
  assert pick(dropout_rate=0.1) == "fused"  # no rng: deterministic (eval)
  assert resolve_implementation(AttentionConfig(), q, k, v[..., :3]) == "reference"  # d_v != d_k
  out, w = attend(q, k, v, need_weights=True)
  assert w.shape == (B, H, 4, 6)
  assert attend(q, k, v)[1] is None


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(implementation="flash"), "choose from \\['auto', 'reference', 'fused', 'chunked'\\]"),
        (
            dict(implementation="fused", score="additive"),
            "fused' does not support score='additive'",
        ),
        (
            dict(implementation="fused", weighting="hard"),
            "fused' does not support weighting='hard'",
        ),
        (dict(implementation="chunked", weighting="hard"), "chunked' does not support weighting"),
        (dict(implementation="fused", need_weights=True), "cannot return the attention weights"),
        (dict(implementation="chunked", need_weights=True), "cannot return the attention weights"),
        (dict(implementation="chunked", query_chunk_size=0), "query_chunk_size must be >= 1"),
        (dict(implementation="chunked", mask=jnp.ones((3, 6), bool)), "does not broadcast"),
        (dict(implementation="fused", mask=jnp.ones((5,), bool)), "does not broadcast"),
        (dict(implementation="chunked", weighting="local"), "needs window >= 0"),
        (dict(implementation="chunked", score="general"), "needs parameter 'w'"),
    ],
)
def test_unsupported_combinations_are_clear_errors(kw, message):
  q, k, v = _qkv(4, 6)
  with pytest.raises(ValueError, match=message):
    _attend(q, k, v, **kw)  # settings: when the AttentionConfig is made; the rest: in the call


def test_every_implementation_name_is_accepted():
  q, k, v = _qkv(4, 6)
  outs = [_attend(q, k, v, implementation=name, causal=True)[0] for name in IMPLEMENTATIONS]
  for o in outs[1:]:
    np.testing.assert_allclose(o, outs[0], **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_backward_memory_is_linear_in_length(causal):
  """Compiled forward+backward temporaries: far below one [L, L] float32 score matrix (which
  the reference holds) and growing linearly with L, also with causal block skipping."""

  def temp_bytes(impl, length):
    q = jnp.zeros((1, 1, length, 16), jnp.float32)
    loss = lambda q, k, v: jnp.sum(
        _attend(
            q, k, v, implementation=impl, causal=causal, query_chunk_size=256, key_chunk_size=256
        )[0]
    )
    step = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, q, q).compile()
    stats = step.memory_analysis()
    if stats is None:
      pytest.skip("this backend reports no compiled memory analysis")
    return stats.temp_size_in_bytes

  score_matrix = 4096 * 4096 * 4
  assert temp_bytes("reference", 4096) >= score_matrix
  small, large = temp_bytes("chunked", 1024), temp_bytes("chunked", 4096)
  assert large < score_matrix / 8
  assert large < 3 * small  # 4x the length: measured ~1.7-1.9x (O(length²) residuals: ~6x)


# ---- NVIDIA GPUs: `fused` in bf16 is cuDNN flash attention ----------------------------------

ON_CUDA = (
    jax.default_backend() == "gpu" and "cuda" in jax.devices()[0].client.platform_version.lower()
)
GPU_PAD = padding_mask(lengths=jnp.array([77, 128]), max_len=128)
GPU_CASES = {  # q_len, k_len, kwargs, whether cuDNN must compute it (else XLA may)
    "self": (128, 128, {}, True),
    "causal": (128, 128, dict(causal=True), True),
    "self_padded": (128, 128, dict(mask=GPU_PAD), True),
    "cross_padded": (64, 128, dict(mask=GPU_PAD), True),
    "causal_padded": (128, 128, dict(causal=True, mask=GPU_PAD), True),
    "local": (128, 128, dict(weighting="local", window=8), False),
    "decode_step": (1, 128, dict(causal=True, q_offset=40), False),
}


@pytest.mark.skipif(not ON_CUDA, reason="cuDNN flash attention needs an NVIDIA GPU")
@pytest.mark.parametrize("case", sorted(GPU_CASES))
def test_fused_bf16_on_gpu_is_cudnn_and_matches_the_fp32_reference(case):
  """bf16 q, k, v: `fused` (cuDNN) output and gradients vs the float32 reference on the same
  bf16-rounded values, within bf16 precision (relative to the largest magnitude)."""
  q_len, k_len, kw, must_be_cudnn = GPU_CASES[case]
  rng = np.random.default_rng(0)
  q, k, v = (
      jnp.asarray(rng.normal(size=(2, 4, n, 64)), jnp.bfloat16) for n in (q_len, k_len, k_len)
  )
  w = jnp.asarray(rng.normal(size=(2, 4, q_len, 64)), jnp.float32)

  def loss(q, k, v, impl):
    out = _attend(q, k, v, implementation=impl, **kw)[0]
    return jnp.sum(out.astype(jnp.float32) * w), out

  grad = lambda impl: jax.jit(  # noqa: E731
      jax.grad(lambda *a: loss(*a, impl), argnums=(0, 1, 2), has_aux=True)
  )
  hlo = grad("fused").lower(q, k, v).compile().as_text()
  if must_be_cudnn:
    assert "cudnn" in hlo.lower(), f"{case}: fused bf16 attention did not use cuDNN"
  grads, out = grad("fused")(q, k, v)
  f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
  ref_grads, ref_out = grad("reference")(f32(q), f32(k), f32(v))
  for got, want in [(out, ref_out), *zip(grads, ref_grads)]:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - want)) <= 2e-2 * np.max(np.abs(want)) + 1e-6
