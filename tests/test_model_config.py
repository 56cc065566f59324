"""experiments/core/model_config.py: every model field is reachable from every experiment's command
line; bad values name the field; old config.json files (flat attention fields) still build."""

import dataclasses
import os

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from experiments.core import configuration, model_config, registry
from experiments.classification import task as classification_task
from experiments.lm import task as lm_task
from experiments.core.task import ConfigError
from experiments.translation import task as translation_task
from tests.conftest import REPO_ROOT

EXPERIMENTS = {  # config file -> task
    'digits': 'classification',
    'mnist': 'classification',
    'translation_multi30k': 'translation',
    'translation_wmt14': 'translation',
    'lm_multi30k': 'lm',
}

# A non-default value for EVERY model field (dotted below `model.`), with the overrides it
# needs to be valid; the first candidate that differs from the experiment's value is used.
# A new model field must get a line here (the test below fails until it has one).
ALTERNATIVES = {
    'patch_size': [{'patch_size': 2}],
    'd_model': [{'d_model': 32}, {'d_model': 48}],
    'num_heads': [{'num_heads': 2}, {'num_heads': 8}],
    'num_layers': [{'num_layers': 3}, {'num_layers': 1}],
    'num_encoder_layers': [{'num_encoder_layers': 2}, {'num_encoder_layers': 3}],
    'num_decoder_layers': [{'num_decoder_layers': 2}, {'num_decoder_layers': 3}],
    'd_ff': [{'d_ff': 96}, {'d_ff': 64}],
    'dropout_rate': [{'dropout_rate': 0.3}, {'dropout_rate': 0.05}],
    'max_len': [{'max_len': 300}, {'max_len': 400}],
    'pooling': [{'pooling': 'mean'}, {'pooling': 'cls'}],
    'stem': [{'stem': 'conv'}, {'stem': 'linear'}],
    'positional': [{'positional': 'learned'}, {'positional': 'sinusoidal'}],
    'norm': [{'norm': 'post'}, {'norm': 'pre'}],
    'share_embeddings': [{'share_embeddings': False}],
    'tie_output_embedding': [{'tie_output_embedding': False}],
    'dtype': [{'dtype': 'bfloat16'}, {'dtype': 'float32'}],
    'scan_layers': [{'scan_layers': True}],
    'remat': [{'remat': 'dots_saveable'}],
    'attention.score': [{'attention.score': 'additive'}],
    'attention.weighting': [{'attention.weighting': 'local', 'attention.window': 3}],
    'attention.window': [{'attention.window': 2}],
    'attention.centers': [
        {
            'attention.centers': 'predicted',
            'attention.gaussian': True,
            'attention.weighting': 'local',
            'attention.window': 2,
        }
    ],
    'attention.gaussian': [
        {'attention.gaussian': True, 'attention.weighting': 'local', 'attention.window': 1}
    ],
    'attention.straight_through': [{'attention.straight_through': False}],
    'attention.d_a': [{'attention.d_a': 16}],
    'attention.dropout_rate': [{'attention.dropout_rate': 0.2}],
    'attention.rope': [{'attention.rope': True}],
    'attention.rope_base': [{'attention.rope_base': 500.0}],
    'attention.implementation': [{'attention.implementation': 'chunked'}],
    'attention.query_chunk_size': [{'attention.query_chunk_size': 64}],
    'attention.key_chunk_size': [{'attention.key_chunk_size': 32}],
    'architecture': [{'architecture': 'rnn'}],
    'rnn_cell': [{'rnn_cell': 'lstm'}],
}


def _fields(cls, prefix=''):
  """Dotted names of every leaf field of a config dataclass (nested dataclasses walked)."""
  out = []
  for f in dataclasses.fields(cls):
    if dataclasses.is_dataclass(f.default):
      out += _fields(type(f.default), f'{prefix}{f.name}.')
    else:
      out.append(prefix + f.name)
  return out


def _model_fields(task):
  entry = registry.entry(task)
  return [f for f in _fields(registry.load(entry.model_config)) if f not in entry.derived]


def _get(obj, dotted):
  for part in dotted.split('.'):
    obj = obj[part] if isinstance(obj, (dict, ml_collections.ConfigDict)) else getattr(obj, part)
  return obj


def _parse(name, overrides):
  """The locked config of configs/NAME.py after `--config.model.X=V` flags, as run.py does."""
  argv = ['run.py', f'--config={os.path.join(REPO_ROOT, "configs", name + ".py")}']
  argv += [f'--config.model.{k}={v}' for k, v in overrides.items()]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      'config', None, 'config', flag_values=values, lock_config=True, sys_argv=argv
  )
  values(argv)
  return values.config


def _build(config):
  if config.task == 'classification':
    return classification_task.build_model_config(config)
  if config.task == 'lm':
    return lm_task.build_model_config(config, 100)
  return translation_task.build_model_config(config, 100, 100)


def test_every_model_field_has_an_alternative():
  for task in set(EXPERIMENTS.values()):
    missing = [f for f in _model_fields(task) if f not in ALTERNATIVES]
    assert not missing, f'add test values for the new model fields {missing}'


@pytest.mark.parametrize('name', sorted(EXPERIMENTS))
def test_every_model_field_is_reachable_from_the_command_line(name):
  """For each field: the experiment's config has it, `--config.model.FIELD=VALUE` sets it, and
  the model config the task builds carries the value."""
  task = EXPERIMENTS[name]
  base = _parse(name, {})
  fields = _model_fields(task)
  assert sorted(base.model.keys()) == sorted({f.split('.')[0] for f in fields})
  for field in fields:
    current = _get(base.model, field)
    overrides = next(
        (o for o in ALTERNATIVES[field] if o[field] != current), ALTERNATIVES[field][-1]
    )
    assert overrides[field] != current, (name, field)
    config = _parse(name, overrides)
    built = _build(config)
    for key, value in overrides.items():
      assert _get(config.model, key) == value, (name, key)
      assert _get(built, key) == value, (name, key)


@pytest.mark.parametrize(
    'override, field',
    [
        ({'attention.weighting': 'sparse'}, 'model.attention.weighting'),
        ({'attention.weighting': 'local'}, 'model.attention.weighting'),
        ({'attention.implementation': 'flash'}, 'model.attention.implementation'),
        ({'remat': 'most'}, 'model.remat'),
        ({'norm': 'middle'}, 'model.norm'),
        ({'dtype': 'float16'}, 'model.dtype'),
    ],
)
def test_bad_model_values_name_the_field(load_config, override, field):
  config = load_config('digits')
  for key, value in override.items():
    *parents, leaf = key.split('.')
    node = config.model
    for p in parents:
      node = node[p]
    node[leaf] = value
  with pytest.raises(ConfigError, match=f'config.{field}: ') as e:
    configuration.validate(config, num_devices=1)
  assert e.value.field == field


def test_unknown_and_moved_fields_are_config_errors(load_config):
  config = load_config('digits')
  with config.model.unlocked():
    config.model.score = 'dot'
  with pytest.raises(ConfigError, match=r'model.score: .*moved to model.attention.score'):
    classification_task.build_model_config(config)


@pytest.mark.parametrize(
    'backend, dtype', [('cpu', 'float32'), ('gpu', 'bfloat16'), ('tpu', 'bfloat16')]
)
def test_auto_dtype_is_bf16_on_accelerators_float32_on_cpu(
    load_config, monkeypatch, backend, dtype
):
  import jax  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  for name in ('translation_multi30k', 'lm_multi30k'):
    config = load_config(name)
    assert config.model.dtype == 'auto' and config.model.attention.implementation == 'auto'
  built = translation_task.build_model_config(load_config('translation_multi30k'), 100, 100)
  assert built.dtype == dtype
