"""Shared helpers of the sweep tests: tiny sweep config files and reading a sweep's study."""

from __future__ import annotations

import importlib.util
import json
import os
import types

import optuna

from conftest import TINY_DIGITS

_TEMPLATE = """\
from experiments.sweep import space, spec


def get_config():
  c = spec.sweep_config(base='configs/digits.py')
  for dotted, value in {base!r}.items():
    *parents, leaf = dotted.split('.')
    node = c.base
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.space = space.build({space})
  for key, value in {fields!r}.items():
    c[key] = value
  return c
"""


def write_sweep(directory, space: str, base: dict | None = None, **fields) -> str:
  """A sweep config file over the tiny digits model; `space` is the source of the dict given
  to space.build, e.g. "{'learning_rate': space.grid(1e-3, 3e-3)}"."""
  path = os.path.join(str(directory), f'sweep_{abs(hash((space, repr(base), repr(fields))))}.py')
  with open(path, 'w') as f:
    f.write(_TEMPLATE.format(base={**TINY_DIGITS, **(base or {})}, space=space, fields=fields))
  return path


def load_trials(workdir: str) -> list[optuna.trial.FrozenTrial]:
  """The trials of the journal-file study of a sweep dir (read-only)."""
  with open(os.path.join(workdir, 'sweep.json')) as f:
    name = json.load(f)['study_name']
  storage = optuna.storages.JournalStorage(
      optuna.storages.journal.JournalFileBackend(os.path.join(workdir, 'journal.log'))
  )
  return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def evaluations(trial_workdir: str) -> list[tuple[int, float]]:
  """(step, eval/accuracy) of a trial's metrics.jsonl."""
  out = []
  with open(os.path.join(trial_workdir, 'metrics.jsonl')) as f:
    for line in f:
      h = json.loads(line)
      if 'eval/accuracy' in h:
        out.append((h['step'], h['eval/accuracy']))
  return out


def load_sweep_config(path: str):
  """get_config() of a sweep config file written by write_sweep."""
  spec = importlib.util.spec_from_file_location('_sweep_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def fake_training(monkeypatch, before=None) -> list[str]:
  """Replaces the training loop by a fake run of 30 steps that evaluates at step 10 (objective
  eval/accuracy = a function of the learning rate) and returns; `before(workdir, kwargs)` runs
  first (it may raise, or call kwargs['on_evaluation']). Returns the trial dirs trained, in
  order."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  calls = []

  def train(config, workdir, **kwargs):
    calls.append(workdir)
    if before is not None:
      before(workdir, kwargs)
    accuracy = 1.0 / (1.0 + abs(float(config.learning_rate)))
    if kwargs.get('on_evaluation') and kwargs['on_evaluation'](10, {'eval/accuracy': accuracy}):
      return loop.TrainResult(types.SimpleNamespace(params={}), 10, workdir, {}, stopped_early=True)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': 30, 'eval/accuracy': accuracy}) + '\n')
    state = types.SimpleNamespace(params={'w': np.zeros((3, 4))})
    return loop.TrainResult(state, 30, workdir, {})

  monkeypatch.setattr(loop, 'train_and_evaluate', train)
  return calls
