"""The `model` section of experiment configs <-> the frozen model config dataclasses.

Every experiment config builds its `model` section from the dataclass defaults, so every model
field (nested `attention` fields included) exists in the locked config and can be overridden on
the command line:

    config.model = model_config.model_section('translation')   # in configs/NAME.py
    config.model.d_model = 128                                   # then what the experiment changes

    python run.py train --config configs/digits.py --workdir DIR \\
        --config.model.attention.weighting=local --config.model.attention.window=3

Task-derived fields (vocabulary sizes, image size, ...; `registry.TASKS[task].derived`) are not in
the section: the task fills them in `build`. `build` turns a bad value into a ConfigError naming
`model.<field>` (e.g. `config.model.attention.window: ...`).

A new task names its model config in its entry of experiments/core/registry.py.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from experiments.core import registry
from experiments.core.task import ConfigError

# Fields of config files written before `model.attention` existed -> their new place (named in
# the error for such a file).
LEGACY_ATTENTION_FIELDS = {
    'score': 'score',
    'weighting': 'weighting',
    'window': 'window',
    'attention_dropout_rate': 'dropout_rate',
}


def _spec(task: str) -> tuple[type, tuple[str, ...]]:
  """(model config class, task-derived fields) of `task`, from the registry."""
  entry = registry.entry(task)
  return registry.load(entry.model_config), entry.derived


def _value_type(hint: Any) -> tuple[type, bool]:
  """(type, optional) of a field annotation, e.g. Optional[int] -> (int, True)."""
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) is typing.Union and len(args) == 1:
    return args[0], True
  return hint, False


def section_from_dataclass(cls: type, exclude: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """A ConfigDict of `cls`'s defaults; dataclass-valued fields become nested sections and
  Optional fields that default to None typed placeholders (so the command line can set them)."""
  hints = typing.get_type_hints(cls)
  section = ml_collections.ConfigDict()
  for field in dataclasses.fields(cls):
    if field.name in exclude:
      continue
    if field.default is dataclasses.MISSING:
      raise ValueError(f'{cls.__name__}.{field.name} has no default; list it as task-derived.')
    value = field.default
    kind, optional = _value_type(hints[field.name])
    if dataclasses.is_dataclass(value):
      section[field.name] = section_from_dataclass(type(value))
      for f in dataclasses.fields(value):  # a non-default instance as the default
        if not dataclasses.is_dataclass(getattr(value, f.name)):
          section[field.name][f.name] = getattr(value, f.name)
    elif value is None and optional:
      section[field.name] = config_dict.placeholder(kind)
    elif isinstance(value, tuple):
      section[field.name] = list(value)
    else:
      section[field.name] = value
  return section


def model_section(task: str) -> ml_collections.ConfigDict:
  """The `model` section for `task`: every field of its model config at its default."""
  cls, derived = _spec(task)
  return section_from_dataclass(cls, exclude=derived)


def with_new_fields(config: Mapping[str, Any]) -> dict[str, Any]:
  """`config` (a config.json dict written by an earlier version) with the model fields added to
  its task's model config since (e.g. model.architecture) at their defaults, which reproduce the
  old model: a run resumes across such an addition. Fields it has are left as they are."""

  def fill(old: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in defaults.items():
      if key not in out:
        out[key] = value
      elif isinstance(value, Mapping) and isinstance(out[key], Mapping):
        out[key] = fill(out[key], value)
    return out

  task, model = config.get('task'), config.get('model')
  if task not in registry.TASKS or not isinstance(model, Mapping):
    return dict(config)
  return {**config, 'model': fill(model, model_section(task).to_dict())}


def _field_named(message: str, cls: type) -> str | None:
  """The field of `cls` a validation message is about (the first one it names)."""
  best = None
  for field in dataclasses.fields(cls):
    m = re.search(rf'(?<![\w.]){re.escape(field.name)}(?!\w)', message)
    if m and (best is None or m.start() < best[0]):
      best = (m.start(), field.name)
  return best[1] if best else None


def _error_field(message: str, cls: type) -> str:
  """'model.<field>' (or 'model.attention.<field>') for a ValueError of the model config."""
  if message.startswith('AttentionConfig'):
    from transformer.attention_config import AttentionConfig  # pylint: disable=g-import-not-at-top

    name = _field_named(message, AttentionConfig)
    return f'model.attention.{name}' if name else 'model.attention'
  name = _field_named(message, cls)
  return f'model.{name}' if name else 'model'


def build(task: str, section: Mapping[str, Any] | ml_collections.ConfigDict, **derived: Any) -> Any:
  """The frozen model config of `task` from `config.model` plus the task-derived fields.

  Raises ConfigError naming `model.<field>` for unknown fields and impossible values."""
  cls, derived_fields = _spec(task)
  values = section.to_dict() if isinstance(section, ml_collections.ConfigDict) else dict(section)
  known = {f.name for f in dataclasses.fields(cls)}
  for name in values:
    if name in derived_fields:
      raise ConfigError(f'model.{name}', f'is derived by the {task} task; remove it')
    if name not in known:
      hint = ''
      if name in LEGACY_ATTENTION_FIELDS:
        hint = f' (it moved to model.attention.{LEGACY_ATTENTION_FIELDS[name]})'
      raise ConfigError(f'model.{name}', f'is not a field of {cls.__name__}{hint}')
  if values.get('dtype') == AUTO_DTYPE:
    values['dtype'] = auto_dtype()
  try:
    return cls(**values, **derived)
  except (ValueError, TypeError) as e:
    raise ConfigError(_error_field(str(e), cls), str(e)) from None


# model.dtype = 'auto': bf16 compute (float32 parameters, softmax, LayerNorm statistics and logits)
# on GPUs and TPUs, where bf16 matmuls are several times faster; float32 on CPUs, where XLA's bf16
# matmul is no faster. The config keeps 'auto', so a run resumes on either kind of machine.
AUTO_DTYPE = 'auto'


def auto_dtype() -> str:
  """The compute dtype that model.dtype='auto' means on this machine's default JAX backend."""
  import jax  # pylint: disable=g-import-not-at-top

  return 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'
