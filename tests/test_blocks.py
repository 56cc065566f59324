"""Blocks and stacks: FFN vs NumPy, post-/pre-LN wiring, causality, caching, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from module_helpers import decode_stepwise, rand, random_variables
from transformer.blocks import BlockConfig, Decoder, DecoderBlock, Encoder, EncoderBlock, FeedForward
from transformer.attention_config import AttentionConfig
from transformer.masks import padding_mask
from transformer.multihead import CausalSelfAttention, CrossAttention, SelfAttention

B, L, M, D, H, F = 2, 5, 3, 8, 2, 16  # batch, length, memory length, width, heads, d_ff


def _cfg(**kwargs):
  return BlockConfig(**{"num_heads": H, "d_ff": F, "dropout_rate": 0.0, **kwargs})


def np_layer_norm(x, p, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def np_ffn(x, p):
  hidden = np.maximum(0.0, x @ np.asarray(p["wi"]["kernel"]) + np.asarray(p["wi"]["bias"]))
  return hidden @ np.asarray(p["wo"]["kernel"]) + np.asarray(p["wo"]["bias"])


def test_feed_forward_matches_numpy():
  x = rand(0, B, L, D)
  module = FeedForward(d_ff=F)
  params = random_variables(module, x)["params"]
  assert params["wi"]["kernel"].shape == (D, F) and params["wo"]["kernel"].shape == (F, D)
  np.testing.assert_allclose(module.apply({"params": params}, x), np_ffn(x, params), atol=1e-5)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_block_residual_layernorm_arrangement(norm):
  x = rand(1, B, L, D)
  mask = padding_mask(np.array([5, 3]), max_len=L)
  block = EncoderBlock(_cfg(norm=norm))
  p = random_variables(block, x, mask)["params"]
  attn = lambda h: np.asarray(SelfAttention(num_heads=H).apply({"params": p["self_attention"]}, h, mask))  # noqa: E731
  ln1 = lambda h: np_layer_norm(h, p["self_attention_norm"])  # noqa: E731
  ln2 = lambda h: np_layer_norm(h, p["ffn_norm"])  # noqa: E731
  if norm == "post":  # x = LN(x + Sublayer(x))
    h = ln1(x + attn(x))
    expected = ln2(h + np_ffn(h, p["ffn"]))
  else:  # x = x + Sublayer(LN(x))
    h = x + attn(ln1(x))
    expected = h + np_ffn(ln2(h), p["ffn"])
  np.testing.assert_allclose(block.apply({"params": p}, x, mask), expected, atol=1e-4)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_decoder_block_residual_layernorm_arrangement(norm):
  y, memory = rand(2, B, L, D), rand(3, B, M, D)
  cross_mask = padding_mask(np.array([2, 3]), max_len=M)
  block = DecoderBlock(_cfg(norm=norm))
  p = random_variables(block, y, memory, None, cross_mask)["params"]
  self_attn = lambda h: np.asarray(  # noqa: E731
      CausalSelfAttention(num_heads=H).apply({"params": p["self_attention"]}, h)
  )
  cross = lambda h: np.asarray(  # noqa: E731
      CrossAttention(num_heads=H).apply({"params": p["cross_attention"]}, h, memory, cross_mask)
  )
  ffn = lambda h: np_ffn(h, p["ffn"])  # noqa: E731
  h = y
  for sublayer, name in [
      (self_attn, "self_attention_norm"),
      (cross, "cross_attention_norm"),
      (ffn, "ffn_norm"),
  ]:
    ln = lambda t: np_layer_norm(t, p[name])  # noqa: E731
    h = ln(h + sublayer(h)) if norm == "post" else h + sublayer(ln(h))
  np.testing.assert_allclose(block.apply({"params": p}, y, memory, None, cross_mask), h, atol=1e-4)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_is_a_stack_of_blocks(norm):
  x = rand(4, B, L, D)
  encoder = Encoder(_cfg(norm=norm), num_layers=3)
  p = random_variables(encoder, x)["params"]
  assert sorted(p) == (["final_norm"] if norm == "pre" else []) + ["layer_0", "layer_1", "layer_2"]
  h = x
  for i in range(3):
    h = EncoderBlock(_cfg(norm=norm)).apply({"params": p[f"layer_{i}"]}, h)
  if norm == "pre":
    h = np_layer_norm(np.asarray(h), p["final_norm"])
  np.testing.assert_allclose(encoder.apply({"params": p}, x), h, atol=1e-4)


def test_encoder_outputs_at_real_positions_ignore_padding():
  x = rand(5, B, L, D)
  mask = padding_mask(np.array([5, 2]), max_len=L)
  encoder = Encoder(_cfg(norm="pre"), num_layers=2)
  variables = random_variables(encoder, x, mask)
  out = encoder.apply(variables, x, mask)
  other = x.copy()
  other[1, 2:] = rand(6, 3, D) * 10
  np.testing.assert_allclose(encoder.apply(variables, other, mask)[1, :2], out[1, :2], atol=1e-5)
  np.testing.assert_allclose(encoder.apply(variables, other, mask)[0], out[0], atol=1e-6)


@pytest.mark.parametrize(
    "cfg",
    [
        _cfg(norm="post"),
        _cfg(norm="pre", attention=AttentionConfig(rope=True), max_len=L),
        # local-m: the cross-attention window follows the target position, also one step at a time
        _cfg(attention=AttentionConfig(weighting="local", window=1)),
        _cfg(attention=AttentionConfig(weighting="local", window=1, gaussian=True)),
    ],
    ids=["post", "pre+rope", "local", "local+gaussian"],
)
def test_decoder_causal_and_cached_decoding_equals_full(cfg):
  y, memory = rand(7, B, L, D), rand(8, B, M, D)
  cross_mask = padding_mask(np.array([3, 1]), max_len=M)
  decoder = Decoder(cfg, num_layers=2)
  params = random_variables(decoder, y, memory, None, cross_mask)["params"]
  full = decoder.apply({"params": params}, y, memory, None, cross_mask)
  # Causality: changing positions after t leaves positions <= t unchanged.
  changed = y.copy()
  changed[:, 3:] = rand(9, B, 2, D)
  np.testing.assert_allclose(
      decoder.apply({"params": params}, changed, memory, None, cross_mask)[:, :3],
      full[:, :3],
      atol=1e-5,
  )
  # Cache: one token per call reproduces the full pass.
  cache = random_variables(decoder, y, memory, None, cross_mask, decode=True)["cache"]
  stepped, _ = decode_stepwise(decoder, params, cache, y, memory, None, cross_mask)
  np.testing.assert_allclose(stepped, full, atol=1e-5)


def test_local_m_cross_attention_sees_the_source_end_past_its_length():
  """A target longer than its source + window still attends to the last window+1 source
  tokens (local-m centres clamped to the source length), never to padding."""
  w, T = 1, 7
  y, memory = rand(11, B, T, D), rand(12, B, M, D)
  src_len = np.array([3, 1])
  cross_mask = padding_mask(src_len, max_len=M)
  decoder = Decoder(_cfg(attention=AttentionConfig(weighting="local", window=w)), num_layers=1)
  params = random_variables(decoder, y, memory, None, cross_mask)["params"]
  _, state = decoder.apply(
      {"params": params}, y, memory, None, cross_mask, mutable=["intermediates"]
  )
  (a,) = state["intermediates"]["layer_0"]["cross_attention"]["attention_weights"]
  a = np.asarray(a)  # [b, h, T, M]
  for b in range(B):
    n = src_len[b]
    for t in range(T):
      p_t = min(t, n - 1)
      for j in range(M):
        if j < n and abs(j - p_t) <= w:
          assert a[b, :, t, j].min() > 0, (b, t, j)
        else:
          assert np.all(a[b, :, t, j] == 0), (b, t, j)
      np.testing.assert_allclose(a[b, :, t].sum(-1), 1.0, rtol=1e-5)


def test_dropout_only_when_training():
  x = rand(10, B, L, D)
  encoder = Encoder(_cfg(dropout_rate=0.3), num_layers=1)
  variables = random_variables(encoder, x)
  eval_out = encoder.apply(variables, x)
  np.testing.assert_allclose(encoder.apply(variables, x, deterministic=True), eval_out)
  with pytest.raises(Exception, match="dropout"):  # training asks for the 'dropout' RNG
    encoder.apply(variables, x, deterministic=False)
  train = encoder.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  assert np.abs(train - eval_out).max() > 1e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"norm": "middle"}, r"unknown norm 'middle'"),
        ({"dropout_rate": 1.0}, r"dropout_rate must be in \[0, 1\), got 1.0"),
        ({"num_heads": 0}, r"num_heads=0 and d_ff=16 must be >= 1"),
    ],
)
def test_bad_block_config_raises(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _cfg(**kwargs)


def test_block_config_takes_an_attention_config_not_a_dict():
  """Dicts of attention settings become an AttentionConfig once, at the model configs."""
  with pytest.raises(TypeError, match=r"attention must be an AttentionConfig .* got dict"):
    _cfg(attention={"dropout_rate": 0.1})


@pytest.mark.parametrize("implementation", ["fused", "chunked"])
def test_decoder_stack_with_each_implementation_equals_reference(implementation):
  """A whole pre-LN decoder stack (causal self-attention with RoPE, cross-attention over padded
  memory): outputs, gradients and cached decoding match the reference implementation."""
  y, memory = rand(11, B, L, D), rand(12, B, M, D)
  cross_mask = padding_mask(np.array([3, 1]), max_len=M)
  attention = AttentionConfig(rope=True, query_chunk_size=2, key_chunk_size=2)
  ref = Decoder(
      _cfg(norm="pre", max_len=L, attention=attention.replace(implementation="reference")), 2
  )
  dec = Decoder(
      _cfg(norm="pre", max_len=L, attention=attention.replace(implementation=implementation)), 2
  )
  params = random_variables(ref, y, memory, None, cross_mask)["params"]
  loss = lambda m: lambda p: jnp.sum(jnp.sin(m.apply({"params": p}, y, memory, None, cross_mask)))  # noqa: E731
  np.testing.assert_allclose(
      dec.apply({"params": params}, y, memory, None, cross_mask),
      ref.apply({"params": params}, y, memory, None, cross_mask),
      atol=1e-5,
  )
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
      jax.grad(loss(dec))(params),
      jax.grad(loss(ref))(params),
  )
  full = ref.apply({"params": params}, y, memory, None, cross_mask)
  cache = random_variables(dec, y, memory, None, cross_mask, decode=True)["cache"]
  stepped, _ = decode_stepwise(dec, params, cache, y, memory, None, cross_mask)
  np.testing.assert_allclose(stepped, full, atol=1e-5)
