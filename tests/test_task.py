"""experiments/task.py: the task registry and the protocol's defaults."""

import pytest

from experiments import task as task_lib
from experiments.classification.task import ClassificationTask


def test_registry():
  assert task_lib.get_task_class('classification') is ClassificationTask
  with pytest.raises(task_lib.ConfigError, match="config.task: unknown task 'nope'") as e:
    task_lib.get_task_class('nope')
  assert e.value.field == 'task'


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
