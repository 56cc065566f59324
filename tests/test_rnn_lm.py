"""transformer/rnn_language_model.py: the recurrent LM (model.architecture='rnn' of the lm task)
against a NumPy loop of flax's GRU equations written here, cached decoding against the full pass,
parameter counts, config errors, and `run.py train` + `run.py generate` from the CLI."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer.language_model import LanguageModelConfig, count_parameters
from transformer.rnn_language_model import RNNLanguageModel, language_model

V, D = 13, 8


def _config(**kw) -> LanguageModelConfig:
  base = dict(vocab_size=V, d_model=D, num_layers=1, max_len=16, architecture='rnn')
  return LanguageModelConfig(**{**base, 'dropout_rate': 0.0, **kw})


def _init(cfg, ids):
  model = language_model(cfg)
  return model, model.init(jax.random.key(0), ids)['params']


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_gru_lm_matches_a_numpy_loop():
  """One GRU layer, tied output: h_t = (1 - z) n + z h_{t-1} with r, z, n as in Cho et al. 2014
  (flax's GRUCell: biases on the input side, and on W_hn), logits_t = h_t Eᵀ."""
  ids = np.array([[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]])
  model, params = _init(_config(), ids)
  got = np.asarray(model.apply({'params': params}, ids))
  p = jax.tree.map(np.asarray, params)
  E, cell = p['embed']['embedding'], p['layer_0']['cell']
  want = np.zeros((2, 7, V))
  for b in range(2):
    h = np.zeros(D)
    for t in range(7):
      x = E[ids[b, t]] * np.sqrt(D)
      lin = lambda name, v: v @ cell[name]['kernel'] + cell[name].get('bias', 0.0)
      r = _sigmoid(lin('ir', x) + lin('hr', h))
      z = _sigmoid(lin('iz', x) + lin('hz', h))
      n = np.tanh(lin('in', x) + r * lin('hn', h))
      h = (1 - z) * n + z * h
      want[b, t] = h @ E.T
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_cached_decoding_equals_the_full_pass(cell):
  cfg = _config(num_layers=2, rnn_cell=cell, tie_output_embedding=cell == 'gru')
  ids = jax.random.randint(jax.random.key(1), (3, 9), 1, V)
  model, params = _init(cfg, ids)
  full = model.apply({'params': params}, ids)
  cache, steps = model.init_cache(3, 9), []
  for t in range(0, 9, 3):  # three tokens a call: the state carries over between calls
    logits, mutated = model.apply(
        {'params': params, 'cache': cache}, ids[:, t : t + 3], decode=True, mutable=['cache']
    )
    cache = mutated['cache']
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)


def test_causal_and_padding_does_not_reach_back():
  cfg = _config(num_layers=2)
  ids = jnp.array([[3, 1, 4, 1, 5, 0, 0]])
  model, params = _init(cfg, ids)
  a = model.apply({'params': params}, ids)
  b = model.apply({'params': params}, ids.at[0, 4:].set(7))
  np.testing.assert_array_equal(a[:, :4], b[:, :4])
  assert not np.allclose(a[:, 4:], b[:, 4:])


def test_parameter_counts():
  """GRU: 3 input kernels d x d with biases, 3 recurrent kernels d x d, the candidate's recurrent
  bias: 6 d² + 4 d per layer; LSTM: 8 d² + 4 d. The tied embedding is not 'non-embedding'."""
  ids = jnp.ones((1, 4), jnp.int32)
  for cell, per_layer in (('gru', 6 * D * D + 4 * D), ('lstm', 8 * D * D + 4 * D)):
    _, params = _init(_config(num_layers=3, rnn_cell=cell), ids)
    counts = count_parameters(params)
    assert counts == {'non_embedding': 3 * per_layer, 'total': 3 * per_layer + V * D}
  _, params = _init(_config(tie_output_embedding=False), ids)
  assert count_parameters(params)['non_embedding'] == 6 * D * D + 4 * D + D * V + V


def test_builder_and_config_errors():
  assert isinstance(language_model(_config()), RNNLanguageModel)
  assert not isinstance(language_model(_config(architecture='transformer')), RNNLanguageModel)
  with pytest.raises(ValueError, match="unknown architecture 'lstm'"):
    _config(architecture='lstm')
  with pytest.raises(ValueError, match="unknown rnn_cell 'rnn'"):
    _config(rnn_cell='rnn')


def test_bf16_runs_and_keeps_float32_logits():
  ids = jnp.ones((2, 5), jnp.int32)
  model, params = _init(_config(dtype='bfloat16'), ids)
  logits = model.apply({'params': params}, ids)
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())


NAMES = ['anna', 'ben', 'carl', 'dora', 'emil', 'fred', 'gina', 'hugo']
ACTIONS = ('runs in the park', 'sleeps in the house')  # the name decides the rest
SENTENCES = [f'{n} {ACTIONS[i % 2]} .' for i, n in enumerate(NAMES)]


def test_cli_trains_and_generates(run_py, tmp_path):
  """`run.py train` of a tiny recurrent LM on a corpus written here memorises it (validation
  perplexity on training sentences falls below 2), and `run.py generate --greedy` continues a name
  with its sentence; --plot_attention is refused in one line (no attention in an RNN)."""
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text(''.join(s + '\n' for s in SENTENCES))
  workdir = str(tmp_path / 'run')
  overrides = {
      'num_train_steps': 150,
      'batch_size': 8,
      'eval_batch_size': 8,
      'learning_rate': 1e-2,
      'schedule': 'constant',
      'warmup_steps': 0,
      'weight_decay': 0.0,
      'log_every_steps': 50,
      'eval_every_steps': 150,
      'checkpoint_every_steps': 150,
      'data.corpus': 'files',
      'data.train_files': str(corpus),
      'data.validation_files': str(corpus),
      'data.test_files': str(corpus),
      'data.vocab_size': 48,
      'data.tokens_per_batch': 128,
      'data.max_train_len': 32,
      'model.architecture': 'rnn',
      'model.d_model': 32,
      'model.num_layers': 1,
      'model.dropout_rate': 0.0,
      'model.max_len': 32,
      'generation.max_new_tokens': 30,
  }
  flags = [f'--config.{k}={v}' for k, v in overrides.items()]
  train = run_py('train', '--config', 'configs/lm_multi30k.py', '--workdir', workdir, *flags)
  assert train.returncode == 0, train.stderr[-3000:]
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    history = [json.loads(line) for line in f]
  (final,) = [h for h in history if 'test/perplexity' in h]
  assert final['test/perplexity'] < 2.0
  gen = run_py('generate', '--workdir', workdir, '--greedy', 'dora')
  assert gen.returncode == 0, gen.stderr[-3000:]
  assert SENTENCES[3] in gen.stdout
  refused = run_py('generate', '--workdir', workdir, '--plot_attention', str(tmp_path / 'a'), 'ben')
  assert refused.returncode == 2
  assert (
      refused.stderr.strip().splitlines()[-1].endswith("model.architecture='rnn' has no attention")
  )
