"""experiments/translation/{task,inference,cli}.py end to end on a tiny generated corpus:
overfitting reproduces the corpus, exact resume, `run.py eval` and `run.py translate`."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, _override
from experiments.text.synthetic_corpus import detok, english_sentences, translate_words, write_corpus

STEPS = 300
TINY = {
    'num_train_steps': STEPS,
    'batch_size': 64,
    'eval_batch_size': 16,
    'learning_rate': 0.3,
    'schedule': 'noam',
    'warmup_steps': 50,
    'weight_decay': 0.0,
    'label_smoothing': 0.0,
    'log_every_steps': 50,
    'eval_every_steps': 150,
    'checkpoint_every_steps': 150,
    'keep_checkpoints': 2,
    'data.verify_checksums': False,
    'data.vocab_size': 128,
    'data.tokens_per_batch': 256,
    'data.length_multiple': 8,
    'data.max_train_len': 32,
    'model.d_model': 64,
    'model.num_heads': 4,
    'model.num_encoder_layers': 1,
    'model.num_decoder_layers': 1,
    'model.d_ff': 128,
    'model.dropout_rate': 0.0,
    'model.attention.dropout_rate': 0.0,
    'model.max_len': 32,
    'decoding.beam_size': 2,
    'decoding.batch_size': 16,
    'decoding.length_multiple': 8,
}


@pytest.fixture(scope='session')
def tiny_corpus(tmp_path_factory):
  """Data root with a tiny multi30k/; every evaluation split is part of train."""
  root = tmp_path_factory.mktemp('tiny_data')
  train = english_sentences()[::2]  # 32 sentences
  splits = {
      'train': train,
      'validation': train[:8],
      'test_2016': train[8:20],
      'test_2017': train[:4],
      'test_2018': train[4:9],
  }
  write_corpus(str(root / 'multi30k'), splits=splits)
  return str(root), splits


@pytest.fixture(scope='session')
def tiny_config(load_config, tiny_corpus, tmp_path_factory):
  tfds_dir = str(tmp_path_factory.mktemp('tiny_tfds'))

  def make(**overrides):
    config = load_config('translation_multi30k')
    return _override(
        config,
        {**TINY, 'data.data_dir': tiny_corpus[0], 'data.tfds_data_dir': tfds_dir, **overrides},
    )

  return make


@pytest.fixture(scope='session')
def trained(tiny_config, tmp_path_factory):
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('translation') / 'run')
  return workdir, loop.train_and_evaluate(tiny_config(), workdir)


def test_overfitting_reproduces_the_corpus(trained, tiny_corpus):
  workdir, result = trained
  _, splits = tiny_corpus
  assert result.final_metrics['test_2016/bleu'] == pytest.approx(100.0)
  from experiments.core import loop  # pylint: disable=g-import-not-at-top
  from experiments.translation.task import search_settings  # pylint: disable=g-import-not-at-top

  restored = loop.restore_for_inference(workdir, 'latest')
  translator = restored.task.translator(restored.trainer.model, restored.trainer.mesh)
  expected = [translate_words(s, 'de') for s in splits['train']]
  for beam in (1, 2, 3):
    outputs = translator.translate(
        restored.state.params, splits['train'], search_settings(restored.config, beam)
    )
    assert [o.text for o in outputs] == expected
  # The run wrote its decoded test set, the BLEU kind, and the attention plots.
  with open(os.path.join(workdir, 'translations', f'test_2016-step{STEPS}.txt')) as f:
    assert f.read().splitlines() == [translate_words(s, 'de') for s in splits['test_2016']]
  with open(os.path.join(workdir, 'translations', f'test_2016-step{STEPS}.bleu.txt')) as f:
    text = f.read()
  assert 'tokenized BLEU' in text and 'tok:none' in text and 'bleu_detok_lc' in text
  assert os.path.exists(os.path.join(workdir, 'plots', 'cross_attention.png'))
  assert os.path.exists(os.path.join(workdir, 'plots', 'cross_attention_heads.png'))


def test_resume_is_exact(trained, tiny_config, tmp_path):
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(tiny_config(num_train_steps=STEPS // 2), workdir)
  spm = os.path.join(workdir, 'assets', 'spm.model')
  mtime = os.stat(spm).st_mtime_ns
  resumed = loop.train_and_evaluate(tiny_config(), workdir)
  assert os.stat(spm).st_mtime_ns == mtime  # the tokenizer was reused, not retrained
  full = trained[1].state.params
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_attention_view_travels_without_the_checkpoint(trained, tmp_path):
  """experiments/analysis/attention_view.py on a translation run: the cross-attention of test
  sentence #0 teacher-forced with its reference, written beside the run and read back the same
  once the checkpoints are gone (what a sweep's record carries)."""
  import shutil  # pylint: disable=g-import-not-at-top

  from experiments.analysis import attention_view  # pylint: disable=g-import-not-at-top
  from experiments.core import checkpointing, loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  shutil.copytree(trained[0], workdir)
  with pytest.raises(FileNotFoundError):
    attention_view.view(str(tmp_path))  # neither a run nor a view
  kind, (weights, src, tgt) = attention_view.make(workdir)
  restored = loop.restore_for_inference(workdir, 'best')
  task = restored.task
  split = task.text('test_2016')
  ids_src = task.tokenizer.encode_source([split.sources[0]])[0]
  ids_tgt = task.tokenizer.encode_target([split.targets[0]])[0]
  assert kind == 'text' and weights.shape == (len(tgt), len(src))
  assert src == task.tokenizer.source_pieces(ids_src) and tgt == task.tokenizer.target_pieces(
      ids_tgt
  )
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)  # a mean of softmax rows
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))
  with pytest.raises(checkpointing.CheckpointNotFoundError):
    attention_view.make(workdir)
  kind2, (weights2, src2, tgt2) = attention_view.view(workdir)
  assert (kind2, src2, tgt2) == (kind, src, tgt)
  np.testing.assert_array_equal(weights2, weights)


def test_eval_cli_prints_bleu(trained, run_py):
  workdir, _ = trained
  proc = run_py('eval', '--workdir', workdir, '--checkpoint', 'best', '--split', 'test_2016')
  assert proc.returncode == 0, proc.stderr
  assert 'test_2016/bleu = 100' in proc.stdout
  assert 'tokenized BLEU' in proc.stderr  # which BLEU it is, with the sacrebleu signature
  proc = run_py('eval', '--workdir', workdir, '--split', 'test_2099')
  assert proc.returncode == 1 and "unknown split 'test_2099'" in proc.stderr


def test_translate_cli_survives_bad_lines(trained, tiny_corpus, tmp_path, run_py):
  workdir, _ = trained
  train = tiny_corpus[1]['train']
  first, last = train[1], train[6]  # e.g. 'a dog runs in the house .'
  lines = [detok(first).encode(), b'', b'A \xff\xfe cat', b'dog ' * 40, detok(last).encode()]
  plots = tmp_path / 'attention'
  proc = run_py(
      'translate',
      '--workdir',
      workdir,
      '--plot_attention',
      str(plots),
      input=b'\n'.join(lines) + b'\n',
      text=False,
      timeout=300,
  )
  out = proc.stdout.decode('utf-8').split('\n')
  err = proc.stderr.decode('utf-8')
  assert proc.returncode == 1, err
  # Input is lowercased and tokenized like the tok data; output is detokenized.
  expected = [translate_words(s, 'de').replace(' .', '.') for s in (first, last)]
  assert out[0] == expected[0] and out[1] == '' and out[2] == '' and out[4] == expected[1]
  assert len(out) == 6 and out[5] == ''  # one output line per input line
  assert 'line 3: error: not valid UTF-8 (byte 0xff at offset 2' in err
  assert 'line 4: warning:' in err and 'max_len=32' in err and 'truncated' not in out[3]
  assert '1 of 5 lines could not be translated' in err
  assert sorted(os.listdir(plots)) == [
      f'attention_{n}{s}.png' for n in (1, 4, 5) for s in ('', '_heads')
  ]
  proc = run_py(
      'translate',
      '--workdir',
      workdir,
      '--beam_size=1',
      '--nodetokenize',
      detok(train[2]),
      detok(train[9]),
      timeout=300,
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [translate_words(train[i], 'de') for i in (2, 9)]


@pytest.mark.parametrize(
    'field, value, message',
    [
        ('data.variant', 'lower', "multi30k has text variants ('raw', 'tok'), got 'lower'"),
        ('data.target_lang', 'en', "source and target language are both 'en'"),
        ('data.source_lang', 'cs', "'cs' is not a language of multi30k"),
        ('data.dataset', 'wmt19', "unknown dataset 'wmt19'"),
        ('data.max_train_len', 300, 'must be in [2, model.max_len=256]'),
        ('data.shared_vocab', False, 'needs one vocabulary'),
        ('decoding.beam_size', 0, 'must be >= 1'),
        ('decoding.alpha', -1.0, 'must be >= 0'),
        ('model.num_heads', 3, 'num_heads=3 does not divide d_model=128'),
        ('model.positional', 'alibi', "unknown positional 'alibi'"),
        ('batch_size', 4, 'must be >= data.row_multiple=8'),
    ],
)
def test_config_errors_name_the_field(load_config, field, value, message):
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top
  from experiments.translation.task import TranslationTask  # pylint: disable=g-import-not-at-top

  config = _override(load_config('translation_multi30k'), {field: value})
  with pytest.raises(ConfigError) as e:
    TranslationTask.validate_config(config)
  expected_field = 'model.share_embeddings' if field == 'data.shared_vocab' else field
  assert e.value.field == expected_field and message in str(e.value)


def test_invalid_config_on_the_command_line_writes_nothing(run_py, tmp_path):
  workdir = tmp_path / 'never'
  proc = run_py(
      'train',
      '--config',
      os.path.join(REPO_ROOT, 'configs', 'translation_multi30k.py'),
      '--workdir',
      str(workdir),
      '--config.data.variant=lower',
  )
  assert proc.returncode == 2
  assert 'config.data.variant' in proc.stderr and 'lower' in proc.stderr
  assert not workdir.exists()
