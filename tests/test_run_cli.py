"""run.py: help texts, exit codes, config errors before anything is written, eval and
classify on a trained workdir."""

import os

import numpy as np
import pytest
from PIL import Image

from experiments.core import checkpointing


def test_top_level_help_lists_the_verbs(run_py):
  out = run_py('--help')
  assert out.returncode == 0
  for verb in ('train', 'eval', 'classify'):
    assert f'  {verb} ' in out.stdout
  assert run_py().returncode == 2  # no verb: usage on stderr
  bad = run_py('fly')
  assert bad.returncode == 2 and "unknown verb 'fly'" in bad.stderr


@pytest.mark.parametrize(
    'verb,expected',
    [
        ('train', ['--config', '--workdir', 'RESUMES', '--config.FIELD=VALUE']),
        ('eval', ['--workdir', '--checkpoint', '--split', 'metrics.jsonl']),
        ('classify', ['--workdir', '--checkpoint', '--top_k', 'error']),
    ],
)
def test_verb_help(run_py, verb, expected):
  out = run_py(verb, '--help')
  assert out.returncode == 0, out.stderr
  for text in expected:
    assert text in out.stdout, (text, out.stdout)


@pytest.mark.parametrize(
    'override,message',
    [
        ('--config.learning_rate=-0.1', 'config.learning_rate: must be a positive number'),
        (
            '--config.model.num_heads=3',
            'config.model.num_heads: ClassifierConfig: num_heads=3 does not divide d_model=64',
        ),
        (
            '--config.model.patch_size=3',
            'config.model.patch_size: ClassifierConfig: patch_size=3 does not divide image_size=(8, 8)',
        ),
        ('--config.data.dataset=cifar100', "config.data.dataset: unknown dataset 'cifar100'"),
        ('--config.model.widht=3', "bad config override 'widht'"),  # unknown key (locked config)
        (
            '--config.num_train_steps=many',
            '--config.num_train_steps=many: invalid literal for int()',
        ),
    ],
)
def test_config_errors_exit_nonzero_and_write_nothing(run_py, tmp_path, override, message):
  workdir = tmp_path / 'run'
  out = run_py('train', '--config', 'configs/digits.py', '--workdir', str(workdir), override)
  assert out.returncode != 0
  assert message in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr, out.stderr
  assert not workdir.exists()


def test_unknown_config_variant_is_one_line_without_traceback(run_py, tmp_path):
  out = run_py('train', '--config', 'configs/mnist.py:slow', '--workdir', str(tmp_path / 'run'))
  assert out.returncode == 2
  assert "ValueError: unknown variant 'slow' of configs/mnist.py" in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr, out.stderr
  assert not (tmp_path / 'run').exists()


def test_missing_config_file_is_a_clear_error(run_py, tmp_path):
  out = run_py('train', '--config', 'configs/no_such_config.py', '--workdir', str(tmp_path / 'run'))
  assert out.returncode == 2
  assert 'cannot load the config file' in out.stderr and 'configs/no_such_config.py' in out.stderr
  assert 'Traceback' not in out.stderr, out.stderr
  assert not (tmp_path / 'run').exists()


def test_two_runs_cannot_share_a_workdir(run_py, tmp_path, tiny_digits_flags):
  with checkpointing.WorkdirLock(str(tmp_path)):
    out = run_py('train', *tiny_digits_flags(), '--workdir', str(tmp_path))
  assert out.returncode == 1
  assert f'{tmp_path} is in use by another run (pid {os.getpid()})' in out.stderr
  assert not (tmp_path / 'config.json').exists()


def test_eval_cli(run_py, trained_workdir):
  workdir, result = trained_workdir
  out = run_py('eval', '--workdir', workdir, '--split', 'test', '--checkpoint', 'latest')
  assert out.returncode == 0, out.stderr
  assert f'test/accuracy = {result.final_metrics["test/accuracy"]:.6g}' in out.stdout
  bad = run_py('eval', '--workdir', workdir, '--split', 'train2')
  assert bad.returncode == 1 and "unknown split 'train2'" in bad.stderr
  missing = run_py('eval', '--workdir', workdir + '_nowhere')
  assert missing.returncode == 1 and 'config.json not found' in missing.stderr
  step = run_py('eval', '--workdir', workdir, '--checkpoint', '7')
  assert step.returncode == 1 and 'no checkpoint for step 7' in step.stderr


def test_classify_cli(run_py, trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  digit = (load_digits().images[0] / 16 * 255).astype(np.uint8)
  png = tmp_path / 'digit.png'
  Image.fromarray(np.kron(digit, np.ones((6, 6), np.uint8))).convert('RGB').save(png)
  not_image = tmp_path / 'notes.png'
  not_image.write_text('not an image')
  out = run_py('classify', '--workdir', workdir, '--top_k', '2', str(png), str(not_image))
  assert out.returncode == 1
  line = [l for l in out.stdout.splitlines() if l.startswith(str(png))]
  assert len(line) == 1 and line[0].count('%') == 2, out.stdout
  assert f'{not_image}: error: not a readable image' in out.stderr
  ok = run_py('classify', '--workdir', workdir, str(png))
  assert ok.returncode == 0 and ok.stdout.count('%') == 3
  none = run_py('classify', '--workdir', workdir)
  assert none.returncode == 2 and 'no image files' in none.stderr
