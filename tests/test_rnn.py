"""transformer/rnn.py, the RNN encoder-decoder with attention (model.architecture='rnn'):
NumPy loop references of the bidirectional GRU encoder and of the decoder steps (dot score),
cached decoding (greedy and beam) against teacher forcing, the CLI (train, translate with
--plot_attention) and its config errors."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from module_helpers import decode_stepwise
from experiments.text.synthetic_corpus import detok, english_sentences, write_corpus
from transformer import decoding, stack_layout
from transformer.models import EncoderDecoderConfig
from transformer.rnn import RNNEncoderDecoder, encoder_decoder

BOS, EOS, PAD = 1, 2, 0
# Right-padded sources and BOS-shifted targets of a vocabulary of 13.
SRC = np.array([[5, 7, 3, 9, EOS, PAD], [4, 11, 6, 8, 10, EOS], [12, EOS, PAD, PAD, PAD, PAD]])
TGT_IN = np.array([[BOS, 6, 9, 3], [BOS, 4, 4, 12], [BOS, 8, PAD, PAD]])


def rnn_config(**overrides) -> EncoderDecoderConfig:
  settings = dict(
      src_vocab_size=13,
      tgt_vocab_size=13,
      d_model=8,
      num_encoder_layers=1,
      num_decoder_layers=1,
      dropout_rate=0.0,
      max_len=16,
      architecture='rnn',
  )
  settings.update(overrides)
  return EncoderDecoderConfig(**settings)


def init(cfg: EncoderDecoderConfig, seed: int = 0):
  model = encoder_decoder(cfg)
  params = model.init(jax.random.key(seed), jnp.asarray(SRC), jnp.asarray(TGT_IN))['params']
  # Non-zero biases, so that a reference that forgot one would disagree.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return model, jax.tree.unflatten(tree, leaves)


# ---- NumPy references -------------------------------------------------------------------


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_gru(p, h, x):
  """flax.linen.GRUCell written out: r, z gates; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
  r = sigmoid(x @ p['ir']['kernel'] + p['ir']['bias'] + h @ p['hr']['kernel'])
  z = sigmoid(x @ p['iz']['kernel'] + p['iz']['bias'] + h @ p['hz']['kernel'])
  n = np.tanh(
      x @ p['in']['kernel'] + p['in']['bias'] + r * (h @ p['hn']['kernel'] + p['hn']['bias'])
  )
  return (1.0 - z) * n + z * h


def np_encoder(p, x_emb, length):
  """Bidirectional GRU over the first `length` positions: [length, d] = [forward; backward]."""
  half = p['forward_rnn']['cell']['hr']['kernel'].shape[0]
  fwd, bwd = np.zeros((length, half)), np.zeros((length, half))
  h = np.zeros(half)
  for j in range(length):
    h = fwd[j] = np_gru(p['forward_rnn']['cell'], h, x_emb[j])
  h = np.zeros(half)
  for j in reversed(range(length)):
    h = bwd[j] = np_gru(p['backward_rnn']['cell'], h, x_emb[j])
  return np.concatenate([fwd, bwd], axis=-1)


def np_decoder_step(p, s_prev, y_emb, annotations):
  """One position: dot-score softmax attention of s_{i-1} over the annotations, the GRU on
  [E y; c], the tanh deep output and the tied output layer. Returns (s_i, weights, logits)."""
  scores = np.array([s_prev @ h_j for h_j in annotations])
  weights = np.exp(scores - scores.max())
  weights /= weights.sum()
  c = sum(a_j * h_j for a_j, h_j in zip(weights, annotations))
  s = np_gru(p['decoder']['layer_0']['cell'], s_prev, np.concatenate([y_emb, c]))
  o = np.tanh(np.concatenate([s, c, y_emb]) @ p['deep_output']['kernel'] + p['deep_output']['bias'])
  return s, weights, o @ p['tgt_embed']['embedding'].T


def test_dot_score_decoder_matches_a_numpy_loop():
  cfg = rnn_config(attention={'score': 'dot'})
  model, params = init(cfg)
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  memory = np.asarray(model.apply({'params': params}, jnp.asarray(SRC), method=model.encode))
  logits, state = model.apply(
      {'params': params}, jnp.asarray(SRC), jnp.asarray(TGT_IN), mutable=['intermediates']
  )
  (weights,) = stack_layout.attention_weights(state['intermediates'], 'decoder', 'cross_attention')
  assert weights.shape == (3, 1, 4, 6)
  scale = np.sqrt(cfg.d_model)
  for b in range(len(SRC)):
    length = int((SRC[b] != PAD).sum())
    h = np_encoder(p['encoder']['layer_0'], p['src_embed']['embedding'][SRC[b]] * scale, length)
    np.testing.assert_allclose(memory[b, :length], h, rtol=1e-5, atol=1e-5)
    # s_0 = tanh(W_s h←_1): the backward annotation of the first source token.
    init_state = p['decoder']['init_state']
    s = np.tanh(h[0, cfg.d_model // 2 :] @ init_state['kernel'] + init_state['bias'])
    for i, y in enumerate(TGT_IN[b]):
      y_emb = p['tgt_embed']['embedding'][y] * scale
      s, a, want = np_decoder_step(p, s, y_emb, h)
      np.testing.assert_allclose(logits[b, i], want, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(weights[b, 0, i, :length], a, rtol=1e-5, atol=1e-6)
      np.testing.assert_array_equal(weights[b, 0, i, length:], 0.0)  # padding gets no weight


# ---- decoding ---------------------------------------------------------------------------

DECODING_CASES = {
    'gru-additive-soft': dict(attention={'score': 'additive'}),
    'lstm-general-soft-2+2-layers': dict(
        rnn_cell='lstm', attention={'score': 'general'}, num_encoder_layers=2, num_decoder_layers=2
    ),
    'gru-dot-local': dict(attention={'score': 'dot', 'weighting': 'local', 'window': 1}),
    'gru-local-predicted': dict(
        attention={'weighting': 'local', 'window': 1, 'centers': 'predicted', 'gaussian': True}
    ),
    'lstm-location-hard': dict(
        rnn_cell='lstm', attention={'score': 'location', 'weighting': 'hard'}
    ),
}


@pytest.mark.parametrize('case', sorted(DECODING_CASES))
def test_cached_decoding_equals_teacher_forcing(case):
  model, params = init(rnn_config(**DECODING_CASES[case]))
  src, tgt_in = jnp.asarray(SRC), jnp.asarray(TGT_IN)
  full = model.apply({'params': params}, src, tgt_in)  # [b, t, V]
  memory = model.apply({'params': params}, src, method=model.encode)
  cache = model.init_cache(len(SRC), TGT_IN.shape[1])
  stepped, cache = decode_stepwise(model, params, cache, tgt_in, memory, src, method=model.decode)
  np.testing.assert_allclose(stepped, full, rtol=1e-5, atol=1e-5)
  assert int(cache['decoder']['cache_index']) == TGT_IN.shape[1]


def teacher_forced(model, params, src, tokens):
  """Teacher-forced log-probabilities [b, len, V] of the outputs `tokens` [b, len]."""
  tgt_in = jnp.concatenate([jnp.full((len(tokens), 1), BOS), tokens[:, :-1]], axis=1)
  return np.asarray(jax.nn.log_softmax(model.apply({'params': params}, src, tgt_in), axis=-1))


def up_to_eos(row) -> list[int]:
  row = [int(y) for y in row]
  return row[: row.index(EOS) + 1]


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
def test_greedy_and_beam_search_agree_with_teacher_forcing(cell):
  """Greedy picks the teacher-forced argmax at each step; each beam's score is its
  teacher-forced log-probability / lp(length), which fails if beam search did not reorder the
  recurrent state with its beams."""
  model, params = init(rnn_config(rnn_cell=cell, attention={'score': 'additive'}), seed=3)
  src, extra, alpha = jnp.asarray(SRC), 4, 0.6
  search = lambda beam: decoding.encoder_decoder_search(  # noqa: E731
      model, params, src, beam_size=beam, alpha=alpha, max_extra_len=extra, bos_id=BOS, eos_id=EOS
  )
  greedy, _ = search(1)
  logp = teacher_forced(model, params, src, greedy)
  for b, row in enumerate(greedy):
    tokens = up_to_eos(row)  # eos is forced at the last allowed position
    forced = list(np.argmax(logp[b, : len(tokens)], axis=-1))
    assert forced[:-1] == tokens[:-1]
    assert forced[-1] == EOS or len(tokens) == int((SRC[b] != PAD).sum()) + extra
  beam_tokens, beam_scores = search(4)
  logp = teacher_forced(model, params, src, beam_tokens)
  for b, row in enumerate(beam_tokens):
    tokens = up_to_eos(row)
    want = sum(logp[b, i, y] for i, y in enumerate(tokens))
    want /= float(decoding.length_penalty(jnp.asarray(len(tokens)), alpha))
    assert float(beam_scores[b]) == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_bfloat16_compute_runs_and_stays_close_to_float32():
  model32, params = init(rnn_config(attention={'score': 'additive'}))
  model16 = RNNEncoderDecoder(rnn_config(attention={'score': 'additive'}, dtype='bfloat16'))
  src, tgt_in = jnp.asarray(SRC), jnp.asarray(TGT_IN)
  want = model32.apply({'params': params}, src, tgt_in)
  got = model16.apply({'params': params}, src, tgt_in)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=0.1)


# ---- config and CLI ---------------------------------------------------------------------


@pytest.mark.parametrize(
    'field, value, message',
    [
        ('model.rnn_cell', 'rnn', "unknown rnn_cell 'rnn'; choose from ['gru', 'lstm']"),
        ('model.architecture', 'lstm', "unknown architecture 'lstm'"),
        ('model.d_model', 207, "d_model=207 must be even for architecture='rnn'"),
        ('model.scan_layers', True, "apply to architecture='transformer' only"),
        ('model.positional', 'rope', "architecture='rnn' has no positions to rotate"),
    ],
)
def test_bad_rnn_options_are_config_errors_naming_the_field(load_config, field, value, message):
  from conftest import _override  # pylint: disable=g-import-not-at-top
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top
  from experiments.translation.task import TranslationTask  # pylint: disable=g-import-not-at-top

  config = _override(load_config('translation_multi30k', 'rnn'), {field: value})
  with pytest.raises(ConfigError) as e:
    TranslationTask.validate_config(config)
  assert e.value.field == field and message in str(e.value)
  assert '\n' not in str(e.value)


def test_rnn_config_matches_the_transformer_parameter_count(load_config):
  from experiments.core import model_config  # pylint: disable=g-import-not-at-top

  def count(variant: str) -> int:
    cfg = model_config.build(
        'translation',
        load_config('translation_multi30k', variant).model,
        src_vocab_size=6000,
        tgt_vocab_size=6000,
        pad_id=PAD,
    )
    ids = jnp.ones((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda: encoder_decoder(cfg).init(jax.random.key(0), ids, ids))
    return sum(x.size for x in jax.tree.leaves(shapes['params']))

  # The counts stated in configs/translation_multi30k.py.
  assert (count('tok'), count('rnn')) == (2_093_568, 2_072_304)


def test_a_translation_run_written_before_the_rnn_fields_still_resumes(load_config):
  """The resume check (loop.py) diffs the workdir's config.json, completed by
  model_config.with_new_fields, against the new config."""
  import copy  # pylint: disable=g-import-not-at-top
  from experiments.core import configuration, model_config  # pylint: disable=g-import-not-at-top

  new = configuration.to_dict(load_config('translation_multi30k'))
  old = copy.deepcopy(new)
  del old['model']['architecture'], old['model']['rnn_cell']
  assert [f for f, _, _ in configuration.diff(old, new)] == ['model.architecture', 'model.rnn_cell']
  assert configuration.diff(model_config.with_new_fields(old), new) == []
  rnn = configuration.to_dict(load_config('translation_multi30k', 'rnn'))
  changes = configuration.diff(model_config.with_new_fields(old), rnn)
  assert ('model.architecture', 'transformer', 'rnn') in changes


TINY_RNN = {
    'num_train_steps': 20,
    'batch_size': 64,
    'eval_batch_size': 16,
    'warmup_steps': 5,
    'log_every_steps': 10,
    'eval_every_steps': 20,
    'checkpoint_every_steps': 20,
    'final_test_splits': 'test_2016',
    'data.verify_checksums': False,
    'data.vocab_size': 128,
    'data.tokens_per_batch': 256,
    'data.length_multiple': 32,  # one batch shape: one compilation
    'data.max_train_len': 32,
    'model.d_model': 16,
    'model.max_len': 32,
    'decoding.beam_size': 1,  # greedy: one search to compile (beam search is tested above)
    'decoding.batch_size': 16,
    'decoding.length_multiple': 32,
}


def train_rnn(workdir, overrides: dict) -> list[str]:
  """The arguments of `run.py train` for the rnn config with --config.FIELD=VALUE overrides."""
  config = os.path.join(REPO_ROOT, 'configs', 'translation_multi30k.py:rnn')
  flags = [f'--config.{k}={v}' for k, v in overrides.items()]
  return ['train', '--config', config, '--workdir', str(workdir), *flags]


def test_cli_trains_translates_and_plots_rnn_alignments(run_py, tmp_path):
  data = tmp_path / 'data'
  sentences = english_sentences()[::2]
  write_corpus(
      str(data / 'multi30k'),
      splits={
          'train': sentences,
          'validation': sentences[:4],
          'test_2016': sentences[4:8],
          'test_2017': sentences[:2],
          'test_2018': sentences[2:4],
      },
  )
  workdir, plots = tmp_path / 'run', tmp_path / 'plots'
  overrides = {**TINY_RNN, 'data.data_dir': str(data), 'data.tfds_data_dir': str(tmp_path / 'tfds')}
  proc = run_py(*train_rnn(workdir, overrides))
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_py(
      'translate',
      '--workdir',
      str(workdir),
      '--checkpoint',
      'latest',
      '--plot_attention',
      str(plots),
      detok(sentences[1]),
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert len(proc.stdout.splitlines()) == 1
  assert sorted(os.listdir(plots)) == ['attention_1.png', 'attention_1_heads.png']
  assert all(os.path.getsize(plots / name) > 1000 for name in os.listdir(plots))


def test_bad_rnn_option_on_the_command_line_is_one_line_and_writes_nothing(run_py, tmp_path):
  workdir = tmp_path / 'never'
  proc = run_py(*train_rnn(workdir, {'model.rnn_cell': 'rnn'}))
  assert proc.returncode == 2
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and 'config.model.rnn_cell' in lines[0] and "'rnn'" in lines[0], lines
  assert not workdir.exists()
