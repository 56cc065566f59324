"""transformer/language_model.py and transformer/sampling.py: causality, the KV cache equals the
full pass, sampling against plain loops, parameter counts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer import stack_layout
from transformer.language_model import LanguageModel, LanguageModelConfig, count_parameters
from transformer.sampling import filter_logits, language_model_sample, sample

V = 23
EOS = 3


def _model(**overrides) -> tuple[LanguageModel, dict]:
  settings = dict(
      vocab_size=V, d_model=16, num_heads=2, num_layers=2, d_ff=32, max_len=12, dropout_rate=0.0
  )
  cfg = LanguageModelConfig(**{**settings, **overrides})
  model = LanguageModel(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))['params']
  return model, params


def _ids(batch: int, length: int, seed: int = 1) -> jnp.ndarray:
  return jax.random.randint(jax.random.PRNGKey(seed), (batch, length), 4, V)


@pytest.mark.parametrize('positional', ['sinusoidal', 'learned', 'rope', 'none'])
@pytest.mark.parametrize('norm', ['pre', 'post'])
def test_causal(positional, norm):
  """Logits at position i do not change when tokens after i change."""
  model, params = _model(positional=positional, norm=norm)
  ids = _ids(2, 10)
  changed = ids.at[:, 6:].set((ids[:, 6:] + 5) % V)
  a = model.apply({'params': params}, ids)
  b = model.apply({'params': params}, changed)
  assert a.shape == (2, 10, V) and a.dtype == jnp.float32
  np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-5)
  assert np.abs(np.asarray(a[:, 6:] - b[:, 6:])).max() > 1e-3  # the future does matter


@pytest.mark.parametrize(
    'positional, scan', [('sinusoidal', False), ('learned', False), ('rope', True), ('none', False)]
)
def test_cache_equals_full_pass(positional, scan):
  model, params = _model(positional=positional, scan_layers=scan)
  ids = _ids(3, 9)
  full = model.apply({'params': params}, ids)
  cache = model.init_cache(3, 9)
  steps = []
  for t in range(9):
    logits, mutated = model.apply(
        {'params': params, 'cache': cache}, ids[:, t : t + 1], decode=True, mutable=['cache']
    )
    cache = mutated['cache']
    steps.append(logits[:, 0])
  np.testing.assert_allclose(np.stack(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize('scan', [False, True])
def test_attention_weights_are_causal(scan):
  model, params = _model(scan_layers=scan)
  _, state = model.apply({'params': params}, _ids(1, 7), mutable=['intermediates'])
  weights = stack_layout.attention_weights(state['intermediates'], 'decoder', 'self_attention')
  assert len(weights) == 2
  w = np.asarray(weights[1])
  assert w.shape == (1, 2, 7, 7)
  np.testing.assert_array_equal(w[..., np.triu_indices(7, 1)[0], np.triu_indices(7, 1)[1]], 0.0)
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize('remat', ['none', 'full'])
def test_scanned_model_computes_the_unrolled_function(remat):
  model, params = _model()
  scanned, _ = _model(scan_layers=True, remat=remat)
  ids = _ids(2, 8)
  np.testing.assert_allclose(
      scanned.apply({'params': stack_layout.to_scanned(params)}, ids),
      model.apply({'params': params}, ids),
      atol=1e-5,
  )


def test_config_errors():
  with pytest.raises(ValueError, match='num_heads'):
    LanguageModelConfig(vocab_size=10, d_model=10, num_heads=3)
  with pytest.raises(ValueError, match='positional'):
    LanguageModelConfig(vocab_size=10, positional='alibi')
  with pytest.raises(ValueError, match='pad_id'):
    LanguageModelConfig(vocab_size=10, pad_id=10)
  model, params = _model()
  with pytest.raises(ValueError, match='max_len'):
    model.apply({'params': params}, _ids(1, 13))


def test_count_parameters_by_hand():
  d, ff, layers, max_len = 16, 32, 2, 12
  model, params = _model(positional='learned', tie_output_embedding=False)
  attention = 4 * (d * d + d)  # q, k, v, out kernels + biases
  ffn = d * ff + ff + ff * d + d
  norms = 2 * 2 * d  # two LayerNorms (scale + bias) per block
  non_embedding = layers * (attention + ffn + norms) + 2 * d + (d * V + V)  # final norm, output
  counts = count_parameters(params)
  assert counts == {'non_embedding': non_embedding, 'total': non_embedding + V * d + max_len * d}


def test_filter_logits_matches_numpy():
  logits = np.array([[2.0, 1.0, 0.5, -1.0, 3.0]], np.float32)
  out = np.asarray(filter_logits(jnp.asarray(logits), 0.5, top_k=2))
  keep = logits[0] >= np.sort(logits[0])[-2]
  z = np.where(keep, logits[0] / 0.5, -np.inf)
  expected = z - np.log(np.exp(z[keep]).sum())
  np.testing.assert_allclose(out[0], expected, rtol=1e-5)
  everything = np.asarray(filter_logits(jnp.asarray(logits), 1.0, top_k=9))  # k > vocab: all
  np.testing.assert_allclose(everything[0], logits[0] - np.log(np.exp(logits[0]).sum()), rtol=1e-5)


def _naive_greedy(model, params, prompt: list[int], total: int) -> list[int]:
  """Argmax continuation with full passes and no cache (plain Python loop)."""
  ids = list(prompt)
  while len(ids) < total:
    logits = model.apply({'params': params}, jnp.asarray([ids], jnp.int32))
    ids.append(int(np.argmax(np.asarray(logits[0, -1]))))
    if ids[-1] == EOS:
      break
  return ids


def test_greedy_sampling_equals_naive_loop():
  model, params = _model()
  prompts = [[2, 5, 9], [2, 7]]
  prompt = jnp.asarray([[2, 5, 9], [2, 7, 0]], jnp.int32)
  run = jax.jit(
      functools.partial(
          language_model_sample, model, max_new_tokens=6, temperature=0.0, top_k=0, eos_id=EOS
      )
  )
  tokens = np.asarray(run(params, prompt, jnp.array([3, 2]), jax.random.PRNGKey(0)))
  assert tokens.shape == (2, 9)
  for row, p in zip(tokens, prompts):
    expected = _naive_greedy(model, params, p, len(p) + 6)
    assert row[: len(expected)].tolist() == expected
    assert (row[len(expected) :] == 0).all()


def test_sampling_is_deterministic_and_respects_top_k():
  model, params = _model()
  prompt = jnp.asarray([[2, 5]] * 8, jnp.int32)
  run = jax.jit(
      functools.partial(
          language_model_sample, model, max_new_tokens=8, temperature=1.5, top_k=3, eos_id=-1
      )
  )
  a = np.asarray(run(params, prompt, jnp.full((8,), 2), jax.random.PRNGKey(7)))
  b = np.asarray(run(params, prompt, jnp.full((8,), 2), jax.random.PRNGKey(7)))
  c = np.asarray(run(params, prompt, jnp.full((8,), 2), jax.random.PRNGKey(8)))
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()
  assert len({tuple(r) for r in a}) > 1  # rows of one batch draw independently
  for row in a:  # every drawn token is among the 3 most likely given its prefix
    logits = np.asarray(model.apply({'params': params}, jnp.asarray(row[None, :-1])))[0]
    for t in range(1, 9):
      assert row[t + 1] in np.argsort(logits[t])[-3:]


def test_sample_stops_at_eos_and_row_limits():
  """A scripted step function: always prefers token 4, except eos after two steps in row 0."""

  def step_fn(ids, t):
    logits = jnp.zeros((2, 6)).at[:, 4].set(5.0)
    logits = logits.at[0, EOS].set(jnp.where(t >= 3, 10.0, 0.0))
    return logits, t + 1

  tokens = sample(
      step_fn,
      jnp.array(0),
      jnp.asarray([[2, 5], [2, 0]]),
      jnp.array([2, 1]),
      jax.random.PRNGKey(0),
      max_len=8,
      temperature=0.0,
      max_lengths=jnp.array([8, 4]),
      eos_id=EOS,
  )
  assert np.asarray(tokens).tolist() == [[2, 5, 4, 4, EOS, 0, 0, 0], [2, 4, 4, 4, 0, 0, 0, 0]]
