"""Directories and parameters written by the code before the issue-20 refactor still work.

The fixtures in tests/data/pre_refactor/ (README.md there: the commit and commands that wrote
them) were made by the old code; these tests run today's code on copies of them:

* a training checkpoint restores, evaluates to the recorded metrics and resumes training;
* a finished sweep directory resumes with the same command (no "sweep config differs", no
  finished trial re-run), and a larger num_trials adds trials;
* tiny models of every kind load the old parameters under the same paths and give the same
  outputs, full pass and one-token-per-call decoding.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

import pre_refactor_models
from conftest import REPO_ROOT

FIXTURES = os.path.join(REPO_ROOT, 'tests', 'data', 'pre_refactor')

# The flags of tests/data/pre_refactor/README.md (the run was trained with these).
DIGITS_FLAGS = [
    '--config.model.d_model=16',
    '--config.model.d_ff=32',
    '--config.model.num_heads=2',
    '--config.model.num_layers=1',
    '--config.warmup_steps=5',
    '--config.log_every_steps=10',
    '--config.eval_every_steps=20',
    '--config.checkpoint_every_steps=20',
    '--config.keep_checkpoints=1',
]
# `run.py eval` of the old code on the step-20 checkpoint.
RECORDED_EVAL = {
    'validation': {'eval/accuracy': 0.2388888888888889, 'eval/loss': 2.122062174479167},
    'test': {'test/accuracy': 0.25, 'test/loss': 2.137067667643229},
}
# The old code resumed to step 30 (`--config.num_train_steps=30`).
RECORDED_RESUME = {
    'train/loss': 2.213289260864258,
    'eval/accuracy': 0.35555555555555557,
    'eval/loss': 2.0635199652777776,
    'test/accuracy': 0.325,
    'test/loss': 2.0676439073350696,
}
SWEEP_FLAGS = [
    '--config.base.num_train_steps=10',
    '--config.base.eval_every_steps=10',
    '--config.base.checkpoint_every_steps=10',
    '--config.base.log_every_steps=10',
    '--config.base.warmup_steps=2',
    '--config.base.model.d_model=16',
    '--config.base.model.d_ff=32',
    '--config.base.model.num_heads=2',
    '--config.base.model.num_layers=1',
    '--config.pruner_warmup_steps=5',
    '--config.pruner_startup_trials=1',
]


def _copy(name: str, tmp_path) -> str:
  workdir = str(tmp_path / name)
  shutil.copytree(os.path.join(FIXTURES, name), workdir)
  return workdir


def _metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _approx(expected: dict) -> dict:
  # Tests compile with other XLA flags (conftest.py) than the fixture run: last bits may differ.
  return {k: pytest.approx(v, rel=1e-4) for k, v in expected.items()}


@pytest.mark.parametrize('split', ['validation', 'test'])
def test_old_checkpoint_evaluates_to_the_recorded_metrics(run_py, tmp_path, split):
  workdir = _copy('digits', tmp_path)
  result = run_py('eval', '--workdir', workdir, '--split', split)
  assert result.returncode == 0, result.stderr[-3000:]
  last = _metrics(workdir)[-1]
  assert last['step'] == 20
  assert {k: last[k] for k in RECORDED_EVAL[split]} == _approx(RECORDED_EVAL[split])


def test_old_checkpoint_resumes_training(run_py, tmp_path):
  workdir = _copy('digits', tmp_path)
  result = run_py(
      'train',
      '--config',
      'configs/digits.py',
      '--workdir',
      workdir,
      '--config.num_train_steps=30',
      *DIGITS_FLAGS,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  at_30 = {}
  for row in _metrics(workdir):
    if row['step'] == 30:
      at_30.update(row)
  assert {k: at_30[k] for k in RECORDED_RESUME} == _approx(RECORDED_RESUME)


def _sweep(run_py, workdir: str, num_trials: int):
  return run_py(
      'sweep',
      '--config',
      'configs/sweeps/digits_lr.py',
      '--workdir',
      workdir,
      f'--config.num_trials={num_trials}',
      *SWEEP_FLAGS,
  )


def _started(output: str) -> list[int]:
  return [int(n) for n in re.findall(r'trial (\d+) started', output)]


def test_old_sweep_directory_resumes(run_py, tmp_path):
  workdir = _copy('sweep', tmp_path)
  same = _sweep(run_py, workdir, num_trials=2)
  output = same.stdout + same.stderr
  assert same.returncode == 0, output[-3000:]
  assert 'differs' not in output
  assert _started(output) == []  # both trials finished before: nothing re-runs
  assert os.path.exists(os.path.join(workdir, 'report.md'))

  more = _sweep(run_py, workdir, num_trials=3)
  output = more.stdout + more.stderr
  assert more.returncode == 0, output[-3000:]
  assert _started(output) == [2]
  assert 'trial 2 COMPLETE' in output


# --------------------------------------------------------------------------------------------
# Models: parameter paths and outputs
# --------------------------------------------------------------------------------------------

MODELS = os.path.join(FIXTURES, 'models.npz')


@pytest.mark.parametrize('name', sorted(pre_refactor_models.CASES))
def test_old_parameters_load_under_the_same_paths_and_give_the_same_outputs(name):
  case, params, x, expected = pre_refactor_models.load(MODELS, name)
  model = pre_refactor_models.build(case['kind'], case['config'])
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *x.values()))['params']
  today = {p: list(s.shape) for p, s in traverse_util.flatten_dict(shapes, sep='/').items()}
  assert today == dict(case['params'])
  actual = pre_refactor_models.outputs(case['kind'], model, params, x)
  assert actual.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
