"""Scanned vs unrolled stacks (transformer/stack.py, stack_layout.py): same function after layout
conversion, decoding and beam search over a scanned cache, remat, and the unrolled parameter
layout that existing checkpoints rely on."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.classification import task as classification_task
from module_helpers import decode_stepwise
from transformer import decoding, stack_layout
from transformer.blocks import BlockConfig, Decoder, Encoder
from transformer.masks import padding_mask
from transformer.classifier import ClassifierConfig, EncoderClassifier
from transformer.models import EncoderDecoder, EncoderDecoderConfig

B, L, M, D, H, F = 2, 5, 3, 8, 2, 16
V = 11
SRC = np.array([[3, 4, 5, 2], [7, 8, 2, 0]], np.int32)
TGT = np.array([[1, 3, 9, 4, 2], [1, 5, 2, 0, 0]], np.int32)


def _rand(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _params(module, *args, **kwargs):
  """Random parameters of the right shapes (no eager initialisers)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.3, s.dtype), shapes["params"]
  )


def _seq2seq(**kwargs):
  base = dict(
      src_vocab_size=V,
      tgt_vocab_size=V,
      d_model=D,
      num_heads=H,
      num_encoder_layers=2,
      num_decoder_layers=3,
      d_ff=F,
      dropout_rate=0.0,
      max_len=12,
      norm="pre",
  )
  return EncoderDecoderConfig(**{**base, **kwargs})


def test_layout_conversion_round_trip_and_accessors():
  model = EncoderDecoder(_seq2seq())
  params = _params(model, SRC, TGT)
  scanned = stack_layout.to_scanned(params)
  assert "layers" in scanned["encoder"] and "layer_0" not in scanned["encoder"]
  assert scanned["decoder"]["layers"]["ffn"]["wi"]["kernel"].shape == (3, D, F)
  assert "final_norm" in scanned["decoder"]  # non-layer children stay
  assert (
      stack_layout.num_layers(scanned["decoder"]) == stack_layout.num_layers(params["decoder"]) == 3
  )
  back = stack_layout.to_unrolled(scanned)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  for a, b in zip(
      stack_layout.layer_trees(params["decoder"]), stack_layout.layer_trees(scanned["decoder"])
  ):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  # Works through optimizer-state containers (namedtuples) too.
  import optax  # pylint: disable=g-import-not-at-top

  opt_state = optax.adam(1e-3).init(params)
  converted = stack_layout.to_scanned(opt_state)
  assert converted[0].mu["encoder"]["layers"]["ffn"]["wo"]["kernel"].shape == (2, F, D)


@pytest.mark.parametrize("remat", ["none", "full", "dots_saveable"])
def test_scanned_encoder_decoder_equals_unrolled(remat):
  """Same logits, gradients and attention weights with to_scanned(params)."""
  unrolled = EncoderDecoder(_seq2seq(positional="rope"))
  scanned = EncoderDecoder(_seq2seq(positional="rope", scan_layers=True, remat=remat))
  params = _params(unrolled, SRC, TGT)
  sparams = stack_layout.to_scanned(params)
  assert jax.tree.map(jnp.shape, _params(scanned, SRC, TGT)) == jax.tree.map(jnp.shape, sparams)

  def loss(model):
    return lambda p: jnp.sum(jax.nn.log_softmax(model.apply({"params": p}, SRC, TGT))[..., 3])

  np.testing.assert_allclose(
      scanned.apply({"params": sparams}, SRC, TGT),
      unrolled.apply({"params": params}, SRC, TGT),
      atol=1e-5,
  )
  grads = stack_layout.to_unrolled(jax.grad(loss(scanned))(sparams))
  ref = jax.grad(loss(unrolled))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grads, ref)
  _, state = scanned.apply({"params": sparams}, SRC, TGT, mutable=["intermediates"])
  _, ref_state = unrolled.apply({"params": params}, SRC, TGT, mutable=["intermediates"])
  for stack, sub in [("encoder", "self_attention"), ("decoder", "cross_attention")]:
    got = stack_layout.attention_weights(state["intermediates"], stack, sub)
    want = stack_layout.attention_weights(ref_state["intermediates"], stack, sub)
    assert len(got) == len(want) == (2 if stack == "encoder" else 3)
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, atol=1e-6)


def test_scanned_decoder_cache_equals_full_pass():
  cfg = BlockConfig(num_heads=H, d_ff=F, dropout_rate=0.0, norm="pre", max_len=L)
  y, memory = _rand(1, B, L, D), _rand(2, B, M, D)
  cross_mask = padding_mask(np.array([3, 1]), max_len=M)
  decoder = Decoder(cfg, num_layers=2, scan=True)
  params = _params(decoder, y, memory, None, cross_mask)
  full = decoder.apply({"params": params}, y, memory, None, cross_mask)
  cache = jax.eval_shape(
      lambda: decoder.init(jax.random.key(0), y, memory, None, cross_mask, decode=True)
  )["cache"]
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache)
  assert cache["layers"]["self_attention"]["cached_key"].shape == (2, B, H, L, D // H)
  stepped, cache = decode_stepwise(decoder, params, cache, y, memory, None, cross_mask)
  np.testing.assert_allclose(stepped, full, atol=1e-5)
  np.testing.assert_array_equal(cache["layers"]["self_attention"]["cache_index"], [L, L])


def test_kv_cache_batch_axes_and_gather():
  """The batch axis is explicit: key/value leaves ndim - 4, indices none; gathering a scanned
  cache equals gathering each layer of the unrolled one."""
  model = EncoderDecoder(_seq2seq(num_decoder_layers=3))
  smodel = EncoderDecoder(_seq2seq(num_decoder_layers=3, scan_layers=True))
  rows, beam = 6, 3  # == 2 sentences x 3 beams; also the scanned layer count 3
  cache, scache = model.init_cache(rows, 4), smodel.init_cache(rows, 4)
  rng = np.random.default_rng(0)
  cache = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), cache)
  scache = stack_layout.to_scanned(cache)  # same contents, layer axis first
  assert jax.tree.map(jnp.shape, scache) == jax.tree.map(jnp.shape, smodel.init_cache(rows, 4))
  axes = decoding.kv_cache_batch_axes(scache)
  assert axes["decoder"]["layers"]["self_attention"]["cached_key"] == 1
  assert axes["decoder"]["layers"]["self_attention"]["cache_index"] is None
  idx = jnp.array([[2, 0, 0], [1, 2, 1]])
  got = decoding.gather_beams(scache, idx, 2, beam, axes)
  want = decoding.gather_beams(cache, idx, 2, beam, decoding.kv_cache_batch_axes(cache))
  jax.tree.map(np.testing.assert_array_equal, stack_layout.to_unrolled(got), want)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_search_over_a_scanned_cache_equals_unrolled(beam_size):
  cfg = _seq2seq(num_decoder_layers=2)
  params = _params(EncoderDecoder(cfg), SRC, TGT)
  results = []
  for model, p in [
      (EncoderDecoder(cfg), params),
      (EncoderDecoder(dataclasses.replace(cfg, scan_layers=True)), stack_layout.to_scanned(params)),
  ]:
    results.append(
        decoding.encoder_decoder_search(
            model, p, SRC, beam_size=beam_size, max_extra_len=4, bos_id=1, eos_id=2
        )
    )
  np.testing.assert_array_equal(results[0][0], results[1][0])
  np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-5)


def test_scanned_classifier_equals_unrolled():
  cfg = ClassifierConfig(
      image_size=(8, 8), patch_size=4, num_classes=3, d_model=D, num_heads=H, num_layers=3, d_ff=F
  )
  images = np.random.default_rng(3).uniform(size=(2, 8, 8, 1)).astype(np.float32)
  params = _params(EncoderClassifier(cfg), images)
  scanned = EncoderClassifier(dataclasses.replace(cfg, scan_layers=True, remat="full"))
  np.testing.assert_allclose(
      scanned.apply({"params": stack_layout.to_scanned(params)}, images),
      EncoderClassifier(cfg).apply({"params": params}, images),
      atol=1e-5,
  )


def test_encoder_stack_remat_keeps_the_unrolled_layout():
  cfg = BlockConfig(num_heads=H, d_ff=F, dropout_rate=0.0)
  x = _rand(4, B, L, D)
  plain, remat = Encoder(cfg, num_layers=2), Encoder(cfg, num_layers=2, remat="full")
  params = _params(plain, x)
  assert jax.tree.map(jnp.shape, _params(remat, x)) == jax.tree.map(jnp.shape, params)
  loss = lambda m: lambda p: jnp.sum(m.apply({"params": p}, x) ** 2)  # noqa: E731
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
      jax.grad(loss(remat))(params),
      jax.grad(loss(plain))(params),
  )


# Parameter paths and shapes of configs/digits.py's model, written out: the unrolled layout every
# existing checkpoint was saved in (identical to the code before AttentionConfig / scan; checked
# once against commit 70d5877 for digits, mnist and translation_multi30k).
_DIGITS_LAYER = [
    ("ffn/wi/bias", (128,)),
    ("ffn/wi/kernel", (64, 128)),
    ("ffn/wo/bias", (64,)),
    ("ffn/wo/kernel", (128, 64)),
    ("ffn_norm/bias", (64,)),
    ("ffn_norm/scale", (64,)),
    ("self_attention/key/bias", (4, 16)),
    ("self_attention/key/kernel", (64, 4, 16)),
    ("self_attention/out/bias", (64,)),
    ("self_attention/out/kernel", (4, 16, 64)),
    ("self_attention/query/bias", (4, 16)),
    ("self_attention/query/kernel", (64, 4, 16)),
    ("self_attention/value/bias", (4, 16)),
    ("self_attention/value/kernel", (64, 4, 16)),
    ("self_attention_norm/bias", (64,)),
    ("self_attention_norm/scale", (64,)),
]
DIGITS_PARAMS = sorted(
    [
        ("cls", (1, 1, 64)),
        ("encoder/final_norm/bias", (64,)),
        ("encoder/final_norm/scale", (64,)),
        ("head/bias", (10,)),
        ("head/kernel", (64, 10)),
        ("patch_embedding/bias", (64,)),
        ("patch_embedding/kernel", (16, 64)),
        ("pos_embedding/embedding", (5, 64)),
    ]
    + [(f"encoder/layer_{i}/{p}", s) for i in range(2) for p, s in _DIGITS_LAYER]
)


def test_digits_checkpoint_layout_is_unchanged(load_config):
  cfg = classification_task.build_model_config(load_config("digits"))
  shapes = jax.eval_shape(
      lambda: EncoderClassifier(cfg).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  )["params"]
  assert stack_layout.param_paths(shapes) == DIGITS_PARAMS
