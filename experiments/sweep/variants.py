"""Named variants: a sweep over a list of points, each a set of config overrides.

Ablations vary one axis at a time from one base model (Vaswani et al. 2017, Table 3), and a
point often changes several fields at once (depth = encoder AND decoder layers; local weighting
= weighting AND window). A grid over fields would cross them; a grid over *named variants*
does not:

  c = spec.sweep_config(base='configs/mnist.py')
  variants.attach(c, {
      'base': {},
      'heads=1': {'model.num_heads': 1},
      'weighting=local,w=3': {'model.attention.weighting': 'local', 'model.attention.window': 3},
  })

`attach` adds the string field `variant` to the base experiment (its value in a trial's
config.json names the point), the table `variants` (JSON text of [[name, {dotted field:
value}], ...]: names like 'dropout=0.1' hold dots, which ConfigDict keys cannot) to the sweep
config and the grid `variant` to the space. The worker expands a trial's variant into its
overrides (`expand`); `check` validates every variant before any trial runs.

A variant name is 'AXIS=VALUE' (several: 'AXIS=VALUE,KEY=VALUE'); the part before the first
'=' is its axis, which the ablation report groups by. 'base' belongs to every axis.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import ml_collections

from experiments.sweep import space as space_lib
from experiments.core.task import ConfigError

FIELD = 'variant'  # the base-config field naming a trial's variant
BASE = 'base'  # the variant without overrides
TUNED = 'tune'  # the sweep-config section of a tuned ablation (experiments/sweep/tune_compare.py)


class VariantError(ConfigError):
  """A bad variant table (unknown field, wrong type, bad name)."""

  def __init__(self, name: str, message: str):
    super().__init__(f'variants.{name}' if name else 'variants', message)


def axis(name: str) -> str:
  """'heads=4' -> 'heads'; 'base' -> 'base'."""
  return name.split('=', 1)[0]


def label(name: str) -> str:
  """'heads=4' -> '4'; 'weighting=local,w=3' -> 'local,w=3'; 'base' -> 'base'."""
  return name.split('=', 1)[1] if '=' in name else name


def table(config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """{name: {dotted field: value}} of a sweep config with variants ({} without)."""
  if 'variants' not in config:
    return {}
  return {name: overrides for name, overrides in json.loads(config.variants)}


def attach(
    config: ml_collections.ConfigDict, points: dict[str, dict[str, Any]]
) -> ml_collections.ConfigDict:
  """Makes `config` (a sweep config) a sweep over the named variants `points`
  ({name: {dotted field: value}})."""
  if not points:
    raise VariantError('', 'no variants')
  for name in points:
    if name != BASE and '=' not in name:
      raise VariantError(name, f"a variant name is 'AXIS=VALUE' or {BASE!r}, got {name!r}")
  with config.unlocked():
    config.base[FIELD] = BASE
    config.variants = json.dumps([[n, dict(o)] for n, o in points.items()], sort_keys=True)
    config.space = space_lib.build({FIELD: space_lib.grid(*points)})
  return config


def overrides(config: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
  """{dotted field: value} of variant `name` of a sweep config."""
  points = table(config)
  if name not in points:
    raise VariantError(name, f'unknown variant; known: {list(points)}')
  return points[name]


def expand(
    sweep: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
  """A trial's experiment config with its variant's overrides applied (unchanged when the
  sweep has no variants)."""
  if 'variants' not in sweep or FIELD not in config:
    return config
  out = copy.deepcopy(config)
  with out.unlocked():
    for dotted, value in overrides(sweep, config[FIELD]).items():
      *parents, leaf = dotted.split('.')
      node = out
      for p in parents:
        node = node[p]
      node[leaf] = value
  return out


def check(sweep: ml_collections.ConfigDict, num_devices: int) -> None:
  """Every variant names existing fields with values of their type and makes a valid
  experiment; raises VariantError naming the variant."""
  if TUNED in sweep:  # its stages are sweeps; the config itself would run at the base rate
    raise ConfigError(
        TUNED,
        'a tuned ablation runs as two sweeps (tune_compare.tune_stage, compare_stage); '
        'run.py sweep runs both',
    )
  if 'variants' not in sweep:
    return
  from experiments.core import configuration  # pylint: disable=g-import-not-at-top

  for name in table(sweep):
    for dotted, value in overrides(sweep, name).items():
      try:
        current = space_lib.field_value(sweep.base, dotted)
      except ConfigError as e:
        raise VariantError(name, str(e).split(': ', 1)[-1]) from None
      if current is not None and value is not None:
        try:
          space_lib.coerce_value(dotted, value, current)
        except ConfigError as e:
          raise VariantError(name, str(e).split(': ', 1)[-1]) from None
    base = copy.deepcopy(sweep.base)
    base[FIELD] = name
    try:
      configuration.validate(expand(sweep, base), num_devices)
    except ConfigError as e:
      raise VariantError(name, f'{e.field}: ' + str(e).split(': ', 1)[-1]) from None
