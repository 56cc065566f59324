"""experiments/lm/{data,task,generation,cli}.py end to end on a tiny corpus: perplexity per token
and per byte against NumPy, overfitting reproduces the corpus, exact resume, `run.py generate`."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
import pytest

from conftest import _override
from experiments.text.synthetic_corpus import detok, write_corpus

NAMES = ['anna', 'ben', 'carl', 'dora', 'emil', 'fred', 'gina', 'hugo', 'iris', 'jack', 'kira']
VERBS = ['runs', 'sleeps', 'eats']
PLACES = ['in the park', 'in the house', 'by the river']
# Every sentence starts with its own name: a model that memorised the corpus continues each
# name with its sentence.
SENTENCES = [f'{n} {VERBS[i % 3]} {PLACES[(i // 3) % 3]} .' for i, n in enumerate(NAMES)]
STEPS = 200
TINY = {
    'num_train_steps': STEPS,
    'batch_size': 16,
    'eval_batch_size': 4,
    'learning_rate': 0.3,
    'schedule': 'noam',  # independent of num_train_steps: a half run + resume = the full run
    'warmup_steps': 20,
    'weight_decay': 0.0,
    'log_every_steps': 50,
    'eval_every_steps': 100,
    'checkpoint_every_steps': 100,
    'data.corpus': 'files',
    'data.vocab_size': 64,
    'data.tokens_per_batch': 128,
    'data.length_multiple': 8,
    'data.max_train_len': 32,
    'model.d_model': 32,
    'model.num_heads': 2,
    'model.num_layers': 2,
    'model.d_ff': 64,
    'model.dropout_rate': 0.0,
    'model.max_len': 32,
    'generation.max_new_tokens': 26,
}


@pytest.fixture(scope='session')
def corpus(tmp_path_factory) -> dict[str, str]:
  root = tmp_path_factory.mktemp('lm_corpus')
  files = {'train': SENTENCES, 'validation': SENTENCES[:4], 'test': SENTENCES[4:9] + ['', 'é ü .']}
  paths = {}
  for split, lines in files.items():
    paths[split] = str(root / f'{split}.txt')
    with open(paths[split], 'w', encoding='utf-8') as f:
      f.writelines(line + '\n' for line in lines)
  return paths


@pytest.fixture(scope='session')
def tiny_config(load_config, corpus):
  def make(**overrides) -> ml_collections.ConfigDict:
    files = {f'data.{split}_files': path for split, path in corpus.items()}
    return _override(load_config('lm_multi30k'), {**TINY, **files, **overrides})

  return make


@pytest.fixture(scope='session')
def trained(tiny_config, tmp_path_factory):
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('lm') / 'run')
  return workdir, loop.train_and_evaluate(tiny_config(), workdir)


def _restored(workdir):
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  return loop.restore_for_inference(workdir, 'latest')


def test_perplexity_per_token_and_byte_match_numpy(trained, corpus):
  """The task's metrics over padded, length-sorted batches equal a per-sentence NumPy sum."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top

  workdir, result = trained
  restored = _restored(workdir)
  sp = spm.SentencePieceProcessor(model_file=os.path.join(workdir, 'assets', 'spm.model'))
  model, params = restored.trainer.model, restored.state.params
  with open(corpus['test'], encoding='utf-8') as f:
    lines = [line.rstrip('\n') for line in f if line.strip()]  # empty lines are skipped
  nll = tokens = nbytes = 0.0
  for line in lines:
    labels = sp.encode(line) + [3]  # + eos
    inputs = [2] + labels[:-1]  # bos + ...
    logits = np.asarray(model.apply({'params': params}, np.array([inputs], np.int32)))[0]
    logits = logits.astype(np.float64)
    for t, label in enumerate(labels):
      row = logits[t] - logits[t].max()
      nll += np.log(np.exp(row).sum()) - row[label]
    tokens += len(labels)
    nbytes += len(line.encode('utf-8')) + 1
  metrics = restored.trainer.evaluate(restored.state, 'test')
  assert metrics['perplexity'] == pytest.approx(np.exp(nll / tokens), rel=1e-4)
  assert metrics['byte_perplexity'] == pytest.approx(np.exp(nll / nbytes), rel=1e-4)
  assert metrics['bits_per_byte'] == pytest.approx(nll / nbytes / np.log(2), rel=1e-4)
  assert result.final_metrics['test/perplexity'] == pytest.approx(metrics['perplexity'], rel=1e-5)


def test_overfitting_reproduces_the_corpus(trained):
  from experiments.lm.generation import Generator  # pylint: disable=g-import-not-at-top

  workdir, result = trained
  restored = _restored(workdir)
  generator = Generator(restored.trainer.model, restored.task.tokenizer)
  samples = generator.generate(restored.state.params, NAMES, temperature=0.0, max_new_tokens=26)
  assert [s.text for s in samples] == SENTENCES
  assert all(s.new_ids[-1] == 3 for s in samples)  # each stopped at eos
  # Validation lines are training lines: only the first token (which name) is uncertain.
  assert result.final_metrics['test/token_accuracy'] > 0.8
  for name in ('samples.txt', 'plots/causal_attention.png', 'plots/causal_attention_heads.png'):
    assert os.path.exists(os.path.join(workdir, name)), name


def test_resume_is_exact(trained, tiny_config, tmp_path):
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(tiny_config(num_train_steps=STEPS // 2), workdir)
  resumed = loop.train_and_evaluate(tiny_config(), workdir)
  for a, b in zip(jax.tree.leaves(trained[1].state.params), jax.tree.leaves(resumed.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_generate_cli(trained, run_py, tmp_path):
  workdir, _ = trained
  sample = ('--temperature', '1.0', '--num_samples', '3', '--seed', '3')
  a = run_py('generate', '--workdir', workdir, *sample, '')
  b = run_py('generate', '--workdir', workdir, *sample, '')
  c = run_py('generate', '--workdir', workdir, *sample[:-1], '4', '')
  assert a.returncode == 0, a.stderr
  assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 3
  assert set(a.stdout.splitlines()) <= set(SENTENCES)  # memorised: every sample is a sentence
  assert a.stdout != c.stdout  # another seed, other sentences
  plots = tmp_path / 'attention'
  greedy = run_py(
      'generate', '--workdir', workdir, '--greedy', '--plot_attention', str(plots), 'dora', 'gina'
  )
  assert greedy.returncode == 0, greedy.stderr
  assert greedy.stdout.splitlines() == [SENTENCES[3], SENTENCES[6]]
  assert sorted(os.listdir(plots)) == [
      'attention_1.png',
      'attention_1_heads.png',
      'attention_2.png',
      'attention_2_heads.png',
  ]


def test_generate_cli_survives_bad_lines(trained, run_py):
  workdir, _ = trained
  stdin = b'emil\n' + b'x ' * 40 + b'\n\xff\xfe\nkira\n'  # fine, too long, not UTF-8, fine
  proc = run_py('generate', '--workdir', workdir, '--greedy', input=stdin, text=False, timeout=600)
  out, err = proc.stdout.decode(), proc.stderr.decode()
  assert proc.returncode == 1, err
  assert out.splitlines() == [SENTENCES[4], SENTENCES[10]]
  assert 'line 2: error: the prompt is' in err and 'max_len=32' in err
  assert 'line 3: error: not valid UTF-8' in err
  assert '2 of 4 prompts could not be continued' in err


def test_generate_cli_rejects_other_tasks(trained_workdir, run_py):
  proc = run_py('generate', '--workdir', trained_workdir[0], 'a dog')
  assert proc.returncode == 1
  assert 'not a language-model run' in proc.stderr and 'Traceback' not in proc.stderr


def test_multi30k_lines_by_language(tmp_path):
  from experiments.lm import data as data_lib  # pylint: disable=g-import-not-at-top

  splits = write_corpus(str(tmp_path / 'multi30k'))
  config = ml_collections.ConfigDict(
      dict(
          corpus='multi30k',
          languages='en,fr',
          variant='raw',
          data_dir=str(tmp_path),
          verify_checksums=False,
          max_train_examples=3,
      )
  )
  lines = data_lib.load_lines(config, 'train')
  assert len(lines) == 6 and lines[:3] == [detok(s) for s in splits['train'][:3]]
  assert data_lib.load_lines(config, 'test_2017')[:3] == [detok(s) for s in splits['test_2017']]
  config.verify_checksums = True
  with pytest.raises(ValueError, match='not the official file'):
    data_lib.load_lines(config, 'validation')
  np.testing.assert_array_equal(data_lib.byte_counts(['ab', 'é']), [3, 3])


@pytest.mark.parametrize(
    'field, value, message',
    [
        ('data.corpus', 'wiki', "unknown corpus 'wiki'"),
        ('data.languages', 'en,cs', 'must be distinct languages'),
        ('data.languages', 'en,en', 'must be distinct languages'),
        ('data.variant', 'lower', "multi30k has text variants ('raw', 'tok'), got 'lower'"),
        ('data.max_train_len', 300, 'must be in [2, model.max_len=128]'),
        ('generation.temperature', -1.0, 'must be >= 0'),
        ('model.num_heads', 3, 'model.num_heads: LanguageModelConfig: num_heads=3 does not divide'),
        ('model.positional', 'alibi', "unknown positional 'alibi'"),
    ],
)
def test_config_errors_name_the_field(load_config, field, value, message):
  from experiments.lm.task import LanguageModelTask  # pylint: disable=g-import-not-at-top
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top

  config = _override(load_config('lm_multi30k'), {field: value})
  with pytest.raises(ConfigError) as e:
    LanguageModelTask.validate_config(config)
  assert e.value.field == field and message in str(e.value)


def test_files_corpus_needs_files(load_config):
  from experiments.lm.task import LanguageModelTask  # pylint: disable=g-import-not-at-top
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top

  config = _override(load_config('lm_multi30k'), {'data.corpus': 'files'})
  with pytest.raises(ConfigError, match='config.data.train_files: is empty'):
    LanguageModelTask.validate_config(config)
