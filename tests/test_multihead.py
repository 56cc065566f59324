"""MultiHeadAttention vs a NumPy loop reference; causality, caching, padding, symmetry, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from module_helpers import rand, random_variables
from transformer.attention_config import AttentionConfig as A
from transformer.masks import padding_mask
from transformer.multihead import CausalSelfAttention, CrossAttention, MultiHeadAttention, SelfAttention

B, L, D, H = 2, 5, 8, 2


def _weights(module, variables, *args, **kwargs):
  """Output and the sown attention weights [b, h, q, k]."""
  out, state = module.apply(variables, *args, mutable=["intermediates"], **kwargs)
  (weights,) = state["intermediates"]["attention_weights"]
  return out, np.asarray(weights)


# ------------------------------------------------------------ independent NumPy reference


def np_score(score, qi, kj, j, p, h):
  """One score e(q_i, k_j) of head h, written out from the papers' formulas."""
  d_k = len(qi)
  if score == "dot":
    return sum(qi[d] * kj[d] for d in range(d_k))
  if score == "scaled_dot":
    return sum(qi[d] * kj[d] for d in range(d_k)) / math.sqrt(d_k)
  if score == "general":  # q^T W k
    w = p["w"][h]
    return sum(qi[a] * w[a, c] * kj[c] for a in range(d_k) for c in range(d_k))
  if score == "additive":  # v^T tanh(W q + U k)
    w_q, w_k, v_a = p["w_q"][h], p["w_k"][h], p["v_a"][h]
    return sum(
        v_a[a] * math.tanh(sum(qi[d] * w_q[d, a] + kj[d] * w_k[d, a] for d in range(d_k)))
        for a in range(len(v_a))
    )
  if score == "location":  # (W q)_j, from the query alone
    return sum(qi[d] * p["w"][h][d, j] for d in range(d_k))
  raise AssertionError(score)


def np_multihead(x_q, x_kv, params, score, mask=None):
  """Each head separately with its slice of the projection weights, then concat + W^O."""
  x_q, x_kv = x_q.astype(np.float64), x_kv.astype(np.float64)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  b_, q_len, _ = x_q.shape
  k_len = x_kv.shape[1]
  h_, d_k = p["query"]["bias"].shape
  heads = []
  for h in range(h_):
    q = x_q @ p["query"]["kernel"][:, h, :] + p["query"]["bias"][h]  # [b, q_len, d_k]
    k = x_kv @ p["key"]["kernel"][:, h, :] + p["key"]["bias"][h]
    v = x_kv @ p["value"]["kernel"][:, h, :] + p["value"]["bias"][h]
    head = np.zeros((b_, q_len, d_k))
    for b in range(b_):
      for i in range(q_len):
        visible = [j for j in range(k_len) if mask is None or mask[b, 0, 0, j]]
        e = {j: np_score(score, q[b, i], k[b, j], j, p.get("score_params"), h) for j in visible}
        z = sum(math.exp(e[j] - max(e.values())) for j in visible)
        for j in visible:
          head[b, i] += math.exp(e[j] - max(e.values())) / z * v[b, j]
    heads.append(head)
  concat = np.concatenate(heads, axis=-1)  # [b, q_len, h * d_k]
  w_o = p["out"]["kernel"].reshape(h_ * d_k, -1)  # [h, d_k, out] -> [h * d_k, out]
  return concat @ w_o + p["out"]["bias"]


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "additive", "location"])
def test_multihead_equals_concatenated_single_heads(score):
  x, memory = rand(0, B, 4, D), rand(1, B, L, 6)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)[:, None, None, :]
  module = MultiHeadAttention(
      num_heads=H, qkv_features=12, out_features=7, config=A(score=score), max_len=L
  )
  params = random_variables(module, x, memory, mask)["params"]
  out = module.apply({"params": params}, x, memory, mask)
  assert out.shape == (B, 4, 7)
  np.testing.assert_allclose(out, np_multihead(x, memory, params, score, mask), atol=1e-4)


def test_weights_are_sown_and_rows_sum_to_one():
  x = rand(2, B, L, D)
  module = SelfAttention(num_heads=H)
  variables = random_variables(module, x)
  _, weights = _weights(module, {"params": variables["params"]}, x)
  assert weights.shape == (B, H, L, L) and weights.dtype == np.float32
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


# ------------------------------------------------------------ causality and the KV cache


def test_causal_outputs_ignore_future_tokens():
  x = rand(3, B, 6, D)
  module = CausalSelfAttention(num_heads=H)
  variables = random_variables(module, x)
  out = module.apply(variables, x)
  for t in range(5):
    changed = x.copy()
    changed[:, t + 1 :] = rand(10 + t, B, 5 - t, D)
    out2 = module.apply(variables, changed)
    np.testing.assert_allclose(out2[:, : t + 1], out[:, : t + 1], atol=1e-6)
    assert np.abs(out2[:, t + 1 :] - out[:, t + 1 :]).max() > 1e-3
  _, weights = _weights(module, variables, x)
  assert np.all(np.triu(weights[0, 0], k=1) == 0)


def _decode_token_by_token(module, x, **init_kwargs):
  variables = random_variables(module, x, decode=True, **init_kwargs)
  params, cache = variables["params"], variables["cache"]
  assert cache["cached_key"].shape == (
      x.shape[0],
      module.num_heads,
      x.shape[1],
      D // module.num_heads,
  )
  steps = []
  for t in range(x.shape[1]):
    out, mutated = module.apply(
        {"params": params, "cache": cache}, x[:, t : t + 1], decode=True, mutable=["cache"]
    )
    cache = mutated["cache"]
    assert int(cache["cache_index"]) == t + 1
    steps.append(out)
  return params, np.concatenate(steps, axis=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"config": A(rope=True)},
        {"config": A(score="location"), "max_len": L},
        {"config": A(weighting="local", window=1, rope=True)},
    ],
    ids=["plain", "rope", "location", "local+rope"],
)
def test_cached_decoding_equals_full_causal_pass(kwargs):
  x = rand(4, B, L, D)
  module = CausalSelfAttention(num_heads=H, **kwargs)
  params, stepped = _decode_token_by_token(module, x)
  full = module.apply({"params": params}, x)
  np.testing.assert_allclose(stepped, full, atol=1e-5)


def test_decode_errors():
  x = rand(5, B, L, D)
  module = CausalSelfAttention(num_heads=H)
  variables = random_variables(module, x, decode=True)
  with pytest.raises(ValueError, match="one token per call, got q_len=2"):
    module.apply(variables, x[:, :2], decode=True, mutable=["cache"])
  with pytest.raises(ValueError, match="cross-attention"):
    MultiHeadAttention(num_heads=H).init(jax.random.key(0), x, rand(6, B, 3, D), decode=True)
  with pytest.raises(ValueError, match=r"length 5 exceeds .*max_len=4"):
    CausalSelfAttention(num_heads=H, max_len=4).init(jax.random.key(0), x, decode=True)


# ------------------------------------------------------------ padding and symmetry


def test_padded_keys_get_zero_weight_and_do_not_matter():
  x = rand(7, B, L, D)
  lengths = np.array([5, 3])
  mask = padding_mask(lengths, max_len=L)
  module = SelfAttention(num_heads=H)
  variables = random_variables(module, x, mask)
  out, weights = _weights(module, variables, x, mask)
  assert np.all(weights[1, :, :, 3:] == 0)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
  other = x.copy()
  other[1, 3:] = 100 * rand(8, 2, D)  # new pad content
  np.testing.assert_allclose(module.apply(variables, other, mask)[1, :3], out[1, :3], atol=1e-5)


def test_cross_attention_uses_memory_and_its_mask():
  y, memory = rand(9, B, 3, D), rand(10, B, L, 6)
  mask = padding_mask(np.array([2, 5]), max_len=L)
  module = CrossAttention(num_heads=H)
  variables = random_variables(module, y, memory, mask)
  out, weights = _weights(module, variables, y, memory, mask)
  assert out.shape == (B, 3, D) and weights.shape == (B, H, 3, L)
  assert np.all(weights[0, :, :, 2:] == 0)
  np.testing.assert_allclose(
      out, np_multihead(y, memory, variables["params"], "scaled_dot", mask), atol=1e-4
  )


@pytest.mark.parametrize("rope", [False, True])
def test_self_attention_permutation_equivariance(rope):
  x = rand(11, B, L, D)
  perm = np.array([3, 0, 4, 1, 2])
  module = SelfAttention(num_heads=H, config=A(rope=rope))
  variables = random_variables(module, x)
  gap = np.abs(module.apply(variables, x[:, perm]) - module.apply(variables, x)[:, perm]).max()
  if rope:
    assert gap > 1e-3  # positions break the symmetry
  else:
    assert gap < 1e-5


# ------------------------------------------------------------ transforms, dropout, hard weights


def test_jit_and_grad():
  x = rand(12, B, L, D)
  module = CausalSelfAttention(num_heads=H, config=A(score="general", rope=True))
  params = jax.jit(module.init)(jax.random.key(0), x)["params"]  # the real initialisers
  assert params["score_params"]["w"].shape == (H, D // H, D // H)
  loss = lambda p: jnp.sum(module.apply({"params": p}, x) ** 2)  # noqa: E731
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(value, loss(params), rtol=1e-5)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, path


def test_dropout_on_weights():
  x = rand(13, B, L, D)
  module = SelfAttention(num_heads=H, config=A(dropout_rate=0.5))
  variables = random_variables(module, x)
  base = module.apply(variables, x)
  np.testing.assert_allclose(module.apply(variables, x, deterministic=True), base)
  rngs = lambda s: {"dropout": jax.random.key(s)}  # noqa: E731
  a = module.apply(variables, x, deterministic=False, rngs=rngs(1))
  assert np.abs(a - base).max() > 1e-3
  np.testing.assert_allclose(module.apply(variables, x, deterministic=False, rngs=rngs(1)), a)


@pytest.mark.parametrize("straight_through", [False, True])
def test_hard_weighting_is_one_hot_and_straight_through_trains(straight_through):
  x = rand(14, B, L, D)
  module = SelfAttention(num_heads=H, config=A(weighting="hard", straight_through=straight_through))
  params = random_variables(module, x)["params"]
  _, weights = _weights(module, {"params": params}, x)
  assert set(np.unique(weights)) <= {0.0, 1.0} and np.all(weights.sum(-1) == 1)
  grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) ** 2))(params)
  query_grad = np.abs(grads["query"]["kernel"]).max()
  assert (query_grad > 0) == straight_through


def test_bfloat16_compute():
  x = jnp.asarray(rand(15, B, L, D), jnp.bfloat16)
  module = CausalSelfAttention(num_heads=H, dtype=jnp.bfloat16)
  variables = random_variables(module, x)
  out, weights = _weights(module, variables, x)
  assert out.dtype == jnp.bfloat16 and weights.dtype == np.float32
  assert variables["params"]["query"]["kernel"].dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, call, message",
    [
        ({"num_heads": 3}, {}, r"qkv_features=8 is not divisible by num_heads=3"),
        (
            {"num_heads": 2, "qkv_features": 7},
            {},
            r"qkv_features=7 is not divisible by num_heads=2",
        ),
        ({"num_heads": 2, "config": A(score="location")}, {}, r"needs max_len, got max_len=None"),
        (
            {"num_heads": 2, "qkv_features": 6, "config": A(rope=True)},
            {},
            r"even head width, got d_k=3",
        ),
        ({"num_heads": 2}, {"mask": np.ones((B, 1, 1, 3), bool)}, r"Mask shape \(2, 1, 1, 3\)"),
        (
            {"num_heads": 2},
            {"inputs_kv": np.ones((3, L, D), np.float32)},
            r"batch sizes differ: inputs_q 2 vs inputs_kv 3",
        ),
    ],
)
def test_bad_settings_raise_with_values(kwargs, call, message):
  x = rand(16, B, L, D)
  with pytest.raises(ValueError, match=message):
    MultiHeadAttention(**kwargs).init(jax.random.key(0), x, **call)
  with pytest.raises(ValueError, match=r"\[batch, len, features\], got inputs_q\(5, 8\)"):
    MultiHeadAttention(num_heads=2).init(jax.random.key(0), x[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"score": "cosine"}, r"unknown score 'cosine'"),
        ({"weighting": "sparse"}, r"unknown weighting 'sparse'"),
        ({"weighting": "local"}, r"needs window >= 0, got window=None"),
        ({"dropout_rate": 1.5}, r"dropout_rate must be in \[0, 1\), got 1.5"),
        ({"implementation": "flash"}, r"unknown implementation 'flash'"),
        ({"centers": "predicted", "weighting": "local", "window": 1}, r"needs gaussian=True"),
        ({"gaussian": True}, r"apply to weighting='local' only"),
        ({"query_chunk_size": 0}, r"query_chunk_size must be >= 1, got 0"),
    ],
)
def test_bad_attention_config_raises_with_values(kwargs, message):
  with pytest.raises(ValueError, match=message):
    A(**kwargs)
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['scor'\]"):
    A.of({"scor": "dot"})


@settings(max_examples=10, deadline=None)
@given(  # a few distinct shapes (each new shape costs compilation), any key masks
    shape=st.sampled_from([(1, 1, 1), (3, L, H), (4, 2, 4)]),
    data=st.data(),
)
def test_property_masked_weights(shape, data):
  """Any shapes and key mask: masked keys weigh 0, rows sum to 1 (or 0 if all masked), finite."""
  q_len, k_len, heads = shape
  lengths = np.array(data.draw(st.lists(st.integers(0, k_len), min_size=2, max_size=2)))
  x, memory = rand(q_len, 2, q_len, D), rand(k_len, 2, k_len, D)
  mask = padding_mask(lengths, max_len=k_len)
  module = MultiHeadAttention(num_heads=heads)
  variables = random_variables(module, x, memory, mask)
  out, weights = _weights(module, variables, x, memory, mask)
  assert np.all(np.isfinite(out)) and weights.shape == (2, heads, q_len, k_len)
  for b in range(2):
    assert np.all(weights[b, ..., lengths[b] :] == 0)
    np.testing.assert_allclose(weights[b].sum(-1), 1.0 if lengths[b] else 0.0, atol=1e-5)


# ------------------------------------------------------------ implementations agree


IMPLEMENTATIONS = ["auto", "fused", "chunked"]


def _cases():
  """(name, module factory(config), inputs) for self, cross and causal attention with padding,
  RoPE and a local window."""
  x, memory = rand(20, B, L, D), rand(21, B, 4, D)
  pad = padding_mask(np.array([5, 3]), max_len=L)
  mem_pad = padding_mask(np.array([4, 2]), max_len=4)
  return [
      ("self+padding", lambda c: SelfAttention(num_heads=H, config=c), (x, pad)),
      ("cross+padding", lambda c: CrossAttention(num_heads=H, config=c), (x, memory, mem_pad)),
      ("causal+padding", lambda c: CausalSelfAttention(num_heads=H, config=c), (x, pad)),
      (
          "causal+rope",
          lambda c: CausalSelfAttention(num_heads=H, config=c.replace(rope=True)),
          (x,),
      ),
      (
          "self+local",
          lambda c: SelfAttention(num_heads=H, config=c.replace(weighting="local", window=1)),
          (x, pad),
      ),
  ]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", range(5), ids=[c[0] for c in _cases()])
def test_every_implementation_equals_reference(implementation, case):
  """Outputs and gradients (w.r.t. parameters and inputs) match the reference, fp32."""
  _, make, inputs = _cases()[case]
  reference = make(A(implementation="reference"))
  module = make(A(implementation=implementation, query_chunk_size=2, key_chunk_size=2))
  params = random_variables(reference, *inputs)["params"]
  cotangent = rand(22, B, L, D)

  def loss(m):
    return lambda p, x: jnp.sum(m.apply({"params": p}, x, *inputs[1:]) * cotangent)

  ref_out = reference.apply({"params": params}, *inputs)
  out = module.apply({"params": params}, *inputs)
  np.testing.assert_allclose(out, ref_out, atol=1e-5, rtol=1e-5)
  ref_grads = jax.grad(loss(reference), argnums=(0, 1))(params, inputs[0])
  grads = jax.grad(loss(module), argnums=(0, 1))(params, inputs[0])
  for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5, err_msg=str(path))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("rope", [False, True], ids=["plain", "rope"])
def test_every_implementation_decodes_like_the_reference_full_pass(implementation, rope):
  x = rand(23, B, L, D)
  config = A(rope=rope, implementation=implementation, query_chunk_size=2, key_chunk_size=2)
  module = CausalSelfAttention(num_heads=H, config=config)
  params, stepped = _decode_token_by_token(module, x)
  reference = CausalSelfAttention(num_heads=H, config=config.replace(implementation="reference"))
  full = reference.apply({"params": params}, x)
  np.testing.assert_allclose(stepped, full, atol=1e-5)


def test_weights_are_collected_whatever_the_implementation():
  """Plots and alignments ask for weights: every implementation then runs the reference."""
  x = rand(24, B, L, D)
  for implementation in ["fused", "chunked", "auto"]:
    module = CausalSelfAttention(num_heads=H, config=A(implementation=implementation))
    _, weights = _weights(module, random_variables(module, x), x)
    assert weights.shape == (B, H, L, L) and np.all(np.triu(weights[0, 0], k=1) == 0)


def test_predicted_centers_local_p():
  """centers='predicted': a learned centre p_t in [0, last visible key] per query; the Gaussian
  factor makes it trainable; the decode cache reproduces the causal full pass."""
  x = rand(25, B, L, D)
  config = A(weighting="local", window=1, centers="predicted", gaussian=True)
  module = CausalSelfAttention(num_heads=H, config=config)
  params, stepped = _decode_token_by_token(module, x)
  assert set(params["centers"]) == {"hidden", "score"}
  full = module.apply({"params": params}, x)
  np.testing.assert_allclose(stepped, full, atol=1e-5)
  grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) ** 2))(params)
  assert np.abs(grads["centers"]["score"]["kernel"]).max() > 0
  # The centre stays within the visible keys: weights after position i are zero.
  _, weights = _weights(module, {"params": params}, x)
  assert np.all(np.triu(weights[0, 0], k=1) == 0)


def test_parameters_are_those_of_flax_multi_head_dot_product_attention():
  """Same parameter tree as flax.linen.MultiHeadDotProductAttention, and the same function."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  x = rand(26, B, L, D)
  mask = padding_mask(np.array([5, 3]), max_len=L)
  flax_module = nn.MultiHeadDotProductAttention(num_heads=H)
  params = random_variables(flax_module, x, x, mask=mask)["params"]
  ours = SelfAttention(num_heads=H)
  assert jax.tree.map(jnp.shape, random_variables(ours, x, mask)["params"]) == jax.tree.map(
      jnp.shape, params
  )
  np.testing.assert_allclose(
      ours.apply({"params": params}, x, mask),
      flax_module.apply({"params": params}, x, x, mask=mask),
      atol=1e-5,
  )
