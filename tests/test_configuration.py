"""experiments/core/configuration.py: validation names the field; config.json round trip."""

import json

import pytest

from experiments.core import configuration
from experiments.core.task import ConfigError

BAD_VALUES = [
    ('learning_rate', -1e-3, 'learning_rate'),
    ('num_train_steps', 0, 'num_train_steps'),
    ('batch_size', 30, 'batch_size'),  # not divisible by 4 devices below
    ('schedule', 'linear', 'schedule'),
    ('optimizer', 'lamb', 'optimizer'),
    ('label_smoothing', 1.0, 'label_smoothing'),
    ('warmup_steps', -1, 'warmup_steps'),
    ('grad_clip_norm', -1.0, 'grad_clip_norm'),
    ('eval_every_steps', 0, 'eval_every_steps'),
]


@pytest.mark.parametrize('field,value,named', BAD_VALUES)
def test_trainer_fields_are_validated(tiny_digits_config, field, value, named):
  config = tiny_digits_config()
  config[field] = value
  with pytest.raises(ConfigError, match=f'config.{named}') as e:
    configuration.validate(config, num_devices=4)
  assert e.value.field == named


def test_valid_configs_pass(load_config):
  for name in ('digits', 'mnist'):
    configuration.validate(load_config(name), num_devices=1)


def test_mesh_larger_than_devices(tiny_digits_config):
  config = tiny_digits_config()
  config.mesh.data = 8
  with pytest.raises(ConfigError, match='mesh.data'):
    configuration.validate(config, num_devices=2)


def test_unknown_task(tiny_digits_config):
  config = tiny_digits_config()
  config.task = 'segmentation'
  with pytest.raises(ConfigError, match="config.task: unknown task 'segmentation'"):
    configuration.validate(config, num_devices=1)


def test_config_is_locked_and_typed(load_config):
  config = load_config('digits')
  config.lock()
  with pytest.raises(AttributeError):
    config.model.widht = 3
  with pytest.raises(TypeError):
    config.num_train_steps = 'many'


def test_write_read_and_diff(tmp_path, tiny_digits_config):
  config = tiny_digits_config()
  configuration.write_config(config, str(tmp_path))
  restored = configuration.read_config(str(tmp_path))
  assert configuration.diff(configuration.to_dict(config), configuration.to_dict(restored)) == []
  restored.unlock()
  restored.model.d_model = 32
  assert configuration.diff(configuration.to_dict(config), configuration.to_dict(restored)) == [
      ('model.d_model', 16, 32)
  ]
  with pytest.raises(FileNotFoundError, match='config.json'):
    configuration.read_config(str(tmp_path / 'nowhere'))


def test_with_new_defaults_adds_trainer_fields_at_their_defaults():
  """Used by the sweep to compare a recorded sweep config with today's fields."""
  assert configuration.with_new_defaults({'seed': 3})['microbatches'] == 1
  assert configuration.with_new_defaults({'microbatches': 4})['microbatches'] == 4
