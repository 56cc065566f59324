"""Search spaces: config fields named by dotted path, each with grid values, a range or
categories. A sweep config writes

  config.space = space.build({
      'learning_rate': space.log_float(1e-4, 3e-2),
      'model.num_heads': space.grid(1, 2, 4),
  })

`parse(space, base_config)` checks every entry against the base experiment (the field exists,
the values have its type, ranges are sane) before any trial runs; `suggest(trial, dims)` asks
an Optuna trial for one point and `apply(base, values)` makes that point's config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from experiments.core import configuration
from experiments.core.task import ConfigError

KINDS = ('grid', 'categorical', 'int', 'float')
RESERVED = ('seed',)  # swept through the sweep's `seeds`, not the space


class SpaceError(ConfigError):
  """A bad search space (unknown field, wrong type, empty)."""

  def __init__(self, field: str, message: str):
    super().__init__(f'space.{field}' if field else 'space', message)


def grid(*values: Any) -> ml_collections.ConfigDict:
  """Every value is tried (with the grid sampler); a category for random / TPE."""
  return ml_collections.ConfigDict({'kind': 'grid', 'values': tuple(values)})


def categorical(*values: Any) -> ml_collections.ConfigDict:
  """Unordered choices (strings, bools, numbers)."""
  return ml_collections.ConfigDict({'kind': 'categorical', 'values': tuple(values)})


def int_range(low: int, high: int, step: int = 1, log: bool = False) -> ml_collections.ConfigDict:
  """Integers low..high (inclusive) every `step`; `log` samples log-uniformly."""
  return ml_collections.ConfigDict(
      {'kind': 'int', 'low': low, 'high': high, 'step': step, 'log': log}
  )


def float_range(low: float, high: float, log: bool = False) -> ml_collections.ConfigDict:
  """Floats in [low, high]; `log` samples log-uniformly (and plots use log axes)."""
  return ml_collections.ConfigDict(
      {'kind': 'float', 'low': float(low), 'high': float(high), 'step': 0, 'log': log}
  )


def log_float(low: float, high: float) -> ml_collections.ConfigDict:
  return float_range(low, high, log=True)


def build(entries: dict[str, ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
  """{dotted field: entry} -> a ConfigDict nested like the experiment config, so that
  `--config.space.learning_rate.high=0.1` overrides work."""
  root = ml_collections.ConfigDict()
  for dotted, entry in entries.items():
    *parents, leaf = dotted.split('.')
    node = root
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    node[leaf] = entry
  return root


def flatten(space: Any, prefix: str = '') -> dict[str, Any]:
  """The nested space -> {dotted field: entry} (an entry is a mapping with 'kind')."""
  out = {}
  for key in space.keys():
    value = space[key]
    name = f'{prefix}{key}'
    if hasattr(value, 'keys') and 'kind' not in value:
      out.update(flatten(value, name + '.'))
    else:
      out[name] = value
  return out


@dataclasses.dataclass(frozen=True)
class Dimension:
  """One checked space entry."""

  field: str  # dotted config path, also the Optuna parameter name
  kind: str  # one of KINDS
  values: tuple[Any, ...] = ()  # grid / categorical
  low: float = 0.0  # int / float ranges
  high: float = 0.0
  step: float = 0  # int step (float ranges: 0 = continuous)
  log: bool = False

  def grid_values(self) -> list[Any] | None:
    """All values for a grid sweep (None for a continuous range)."""
    if self.kind in ('grid', 'categorical'):
      return list(self.values)
    if self.kind == 'int':
      return list(range(int(self.low), int(self.high) + 1, int(self.step)))
    return None


def field_value(base: ml_collections.ConfigDict, field: str) -> Any:
  node = base
  parts = field.split('.')
  for i, part in enumerate(parts):
    if not hasattr(node, 'keys') or part not in node:
      where = '.'.join(parts[:i]) or 'the top level'
      known = sorted(node.keys()) if hasattr(node, 'keys') else []
      raise SpaceError(field, f'no field {part!r} in {where} of the base config; known: {known}')
    node = node[part]
  if hasattr(node, 'keys'):
    raise SpaceError(field, 'is a section of the base config, not a field')
  return node


def coerce_value(field: str, value: Any, base_value: Any) -> Any:
  """`value` as the base field's type, or a SpaceError naming both."""
  t = type(base_value)
  ok = (
      (t is bool and isinstance(value, bool))
      or (t is int and isinstance(value, int) and not isinstance(value, bool))
      or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
      or (t is str and isinstance(value, str))
  )
  if t not in (bool, int, float, str):
    raise SpaceError(field, f'cannot sweep a field of type {t.__name__} (value {base_value!r})')
  if not ok:
    raise SpaceError(
        field, f'value {value!r} ({type(value).__name__}) does not fit the field type {t.__name__}'
    )
  return float(value) if t is float else value


def _dimension(field: str, entry: Any, base: ml_collections.ConfigDict) -> Dimension:
  if field in RESERVED:
    raise SpaceError(field, "sweep seeds with the sweep's `seeds` field, not the space")
  if not hasattr(entry, 'keys') or entry.get('kind') not in KINDS:
    raise SpaceError(
        field, f'{entry!r} is not a space entry; use grid, categorical, int_range, float_range'
    )
  base_value = field_value(base, field)
  kind = entry['kind']
  if kind in ('grid', 'categorical'):
    values = tuple(coerce_value(field, v, base_value) for v in entry['values'])
    if not values:
      raise SpaceError(field, f'{kind} has no values')
    if len(set(values)) != len(values):
      raise SpaceError(field, f'{kind} values repeat: {values}')
    return Dimension(field, kind, values=values)
  low, high, step, log = entry['low'], entry['high'], entry.get('step', 0), entry.get('log', False)
  want = int if kind == 'int' else float
  if type(base_value) is not want:  # pylint: disable=unidiomatic-typecheck
    raise SpaceError(
        field, f'a {kind} range needs a {want.__name__} field, the base value is {base_value!r}'
    )
  coerce_value(field, low, base_value), coerce_value(field, high, base_value)
  if not low < high:
    raise SpaceError(field, f'range needs low < high, got [{low}, {high}]')
  if log and low <= 0:
    raise SpaceError(field, f'a log range needs low > 0, got {low}')
  if kind == 'int' and (not isinstance(step, int) or step < 1 or (log and step != 1)):
    raise SpaceError(field, f'int step must be an integer >= 1 (1 with log), got {step!r}')
  return Dimension(field, kind, low=low, high=high, step=step, log=bool(log))


def parse(space: Any, base: ml_collections.ConfigDict) -> list[Dimension]:
  """Checked dimensions of `space` (nested ConfigDict) against the base experiment config."""
  entries = flatten(space) if space is not None else {}
  if not entries:
    raise SpaceError('', 'is empty: name at least one config field to sweep')
  return [_dimension(field, entry, base) for field, entry in sorted(entries.items())]


def grid_size(dims: list[Dimension]) -> int:
  """The number of grid points, without listing them; continuous ranges are an error."""
  size = 1
  for d in dims:
    if d.kind in ('grid', 'categorical'):
      size *= len(d.values)
    elif d.kind == 'int':
      size *= (int(d.high) - int(d.low)) // int(d.step) + 1
    else:
      raise _not_discrete(d)
  return size


def _not_discrete(d: Dimension) -> SpaceError:
  return SpaceError(d.field, 'a grid sweep needs discrete values (grid, categorical, int)')


def grid_search_space(dims: list[Dimension]) -> dict[str, list[Any]]:
  """{field: values} for optuna.samplers.GridSampler; continuous ranges are an error."""
  out = {}
  for d in dims:
    values = d.grid_values()
    if values is None:
      raise _not_discrete(d)
    out[d.field] = values
  return out


def suggest(trial, dims: list[Dimension]) -> dict[str, Any]:
  """One point from an optuna.Trial (values already suggested, e.g. of a resumed trial, are
  returned unchanged)."""
  values = {}
  for d in dims:
    if d.kind in ('grid', 'categorical'):
      values[d.field] = trial.suggest_categorical(d.field, list(d.values))
    elif d.kind == 'int':
      values[d.field] = trial.suggest_int(
          d.field, int(d.low), int(d.high), step=int(d.step), log=d.log
      )
    else:
      values[d.field] = trial.suggest_float(d.field, d.low, d.high, log=d.log)
  return values


def apply(base: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `base` with `values` ({dotted field: value}) set."""
  return configuration.with_overrides(base, values)
