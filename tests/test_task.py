"""experiments/core/registry.py (tasks and verbs) and the Task protocol's defaults."""

import dataclasses

import pytest

from experiments.core import registry
from experiments.core import task as task_lib
from experiments.classification.task import ClassificationTask


def test_registry():
  assert registry.task_class('classification') is ClassificationTask
  with pytest.raises(task_lib.ConfigError, match="config.task: unknown task 'nope'") as e:
    registry.task_class('nope')
  assert e.value.field == 'task'


def test_every_registered_verb_loads_and_is_named_once():
  verbs = registry.verbs()
  assert {'train', 'eval', 'classify', 'translate', 'generate', 'sweep', 'doctor'} <= set(verbs)
  for name, target in verbs.items():
    verb = registry.load(target)
    assert isinstance(verb, task_lib.Verb) and verb.name == name


def test_a_verb_registered_twice_is_refused(monkeypatch):
  entry = registry.TASKS['lm']
  monkeypatch.setitem(registry.TASKS, 'lm', dataclasses.replace(entry, verbs={'train': 'x:Y'}))
  with pytest.raises(ValueError, match="verb 'train' is registered twice"):
    registry.verbs()


def test_defaults(tiny_digits_config):
  task = ClassificationTask(tiny_digits_config())
  assert task.eval_splits == ('validation', 'test')
  assert (task.best_metric, task.best_mode) == ('accuracy', 'max')

  class Minimal(task_lib.Task):  # only the abstract methods
    build_model = dummy_inputs = train_source = eval_batches = loss_and_metrics = None

  minimal = Minimal(tiny_digits_config())
  assert minimal.hints('/w') == [] and minimal.make_plots(None, '/p', []) == []
  assert minimal.setup(None) is None
  with pytest.raises(NotImplementedError):
    minimal.model_inputs({})


def test_run_errors_are_also_builtin_errors():
  error = task_lib.ConfigError('model.d_model', 'must be > 0')
  assert isinstance(error, task_lib.RunError) and isinstance(error, ValueError)
  assert str(error) == 'config.model.d_model: must be > 0'
