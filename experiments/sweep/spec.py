"""The sweep config file (configs/sweeps/*.py): what to sweep and how.

  def get_config():
    c = spec.sweep_config(base='configs/digits.py')     # or base=digits.get_config()
    c.base.num_train_steps = 600                         # change the base experiment
    c.space = space.build({'learning_rate': space.log_float(1e-4, 3e-2)})
    c.objective = 'eval/accuracy'                        # a metric name in metrics.jsonl
    c.direction = 'maximize'
    c.sampler = 'tpe'
    c.num_trials = 12
    return c

Fields (all overridable: --config.num_trials=20, --config.base.num_train_steps=100):
  name          study name ('' = the config file's name); workers of one sweep share it
  base          the base experiment config (any configs/*.py)
  base_source   where `base` came from (documentation only)
  space         the search space (experiments/sweep/space.py)
  objective     metric name as written in metrics.jsonl: 'eval/...' (validation, best value over
                the run's evaluations is the trial's objective) or 'test/...' (final test value)
  direction     'maximize' | 'minimize'
  sampler       'grid' | 'random' | 'tpe'
  sampler_seed  seed of the sampler (random / TPE draws, grid order)
  num_trials    points to try; grid: 0 = the whole grid. Runs = num_trials x seeds
  seeds         runs per point, with seed = base.seed + 0, 1, ..., seeds - 1
  pruner        'none' | 'median' | 'successive_halving' (trials report at every evaluation)
  pruner_warmup_steps  median pruner: no pruning before this training step
  pruner_startup_trials  median pruner: no pruning until this many trials have finished
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import ml_collections

from experiments.sweep import space as space_lib
from experiments.core.task import ConfigError

SAMPLERS = ('grid', 'random', 'tpe')
PRUNERS = ('none', 'median', 'successive_halving')
DIRECTIONS = ('maximize', 'minimize')
# A grid sampler materialises every point (x seeds); more than this is refused beforehand.
MAX_GRID_POINTS = 100_000
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Fields whose change makes a different sweep (a resumed sweep dir must keep them).
IDENTITY_FIELDS = (
    'base',
    'space',
    'objective',
    'direction',
    'sampler',
    'sampler_seed',
    'seeds',
    'pruner',
    'pruner_warmup_steps',
    'pruner_startup_trials',
    'variants',  # named points (experiments/sweep/variants.py), when the sweep has them
)


class SweepConfigError(ConfigError):
  """A bad sweep config field."""

  def __init__(self, field: str, message: str):
    ConfigError.__init__(self, field, message)


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """get_config() of a config file ('configs/x.py' or 'configs/x.py:ARG'), relative to the
  working directory or the repository root."""
  path, _, arg = path.partition(':')
  candidates = [path, os.path.join(REPO_ROOT, path)]
  found = next((p for p in candidates if os.path.isfile(p)), None)
  if found is None:
    raise SweepConfigError('base', f'config file {path!r} not found')
  name = '_sweep_base_' + os.path.splitext(os.path.basename(found))[0]
  module_spec = importlib.util.spec_from_file_location(name, found)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def sweep_config(base: str | ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sweep defaults around `base` (a config file path or an experiment ConfigDict)."""
  c = ml_collections.ConfigDict()
  c.name = ''
  c.base_source = base if isinstance(base, str) else ''
  c.base = load_config_file(base) if isinstance(base, str) else base
  c.space = ml_collections.ConfigDict()
  c.objective = 'eval/accuracy'
  c.direction = 'maximize'
  c.sampler = 'tpe'
  c.sampler_seed = 0
  c.num_trials = 8
  c.seeds = 1
  c.pruner = 'none'
  c.pruner_warmup_steps = 0
  c.pruner_startup_trials = 3
  return c


def validate(config: ml_collections.ConfigDict, num_devices: int) -> list[space_lib.Dimension]:
  """Checks the sweep fields, the base experiment and the space; returns the dimensions."""
  from experiments.core import configuration  # pylint: disable=g-import-not-at-top

  for field in ('base', 'space', 'objective', 'direction', 'sampler', 'num_trials', 'seeds'):
    if field not in config:
      raise SweepConfigError(field, 'missing; start the sweep config from spec.sweep_config()')
  if config.direction not in DIRECTIONS:
    raise SweepConfigError('direction', f'{config.direction!r}; choose one of {DIRECTIONS}')
  if config.sampler not in SAMPLERS:
    raise SweepConfigError('sampler', f'{config.sampler!r}; choose one of {SAMPLERS}')
  if config.pruner not in PRUNERS:
    raise SweepConfigError('pruner', f'{config.pruner!r}; choose one of {PRUNERS}')
  if '/' not in config.objective:
    raise SweepConfigError(
        'objective', f"{config.objective!r} is not a metric name like 'eval/accuracy'"
    )
  for field in ('pruner_warmup_steps', 'pruner_startup_trials'):
    value = config.get(field, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      raise SweepConfigError(field, f'must be an integer >= 0, got {value!r}')
  if config.seeds < 1:
    raise SweepConfigError('seeds', f'must be >= 1, got {config.seeds}')
  if config.num_trials < 0 or (config.num_trials == 0 and config.sampler != 'grid'):
    raise SweepConfigError(
        'num_trials', f'must be > 0 (0 = the whole grid, grid only), got {config.num_trials}'
    )
  try:
    configuration.validate(config.base, num_devices)
  except ConfigError as e:
    raise SweepConfigError('base.' + e.field, str(e).split(': ', 1)[-1]) from None
  dims = space_lib.parse(config.space, config.base)
  if config.sampler == 'grid':
    size = space_lib.grid_size(dims) * config.seeds
    if size > MAX_GRID_POINTS:
      raise SweepConfigError(
          'space',
          f'the grid has {size:,} points (x seeds), more than {MAX_GRID_POINTS:,}; use '
          "sampler='random' or 'tpe' with num_trials, or fewer values",
      )
  from experiments.sweep import variants  # pylint: disable=g-import-not-at-top

  variants.check(config, num_devices)
  return dims


def seeds(config: ml_collections.ConfigDict) -> list[int]:
  return [config.base.seed + i for i in range(config.seeds)]


def identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields that define the sweep, as plain JSON (data directories excluded)."""
  out = json.loads(config.to_json_best_effort())
  out = {k: out[k] for k in IDENTITY_FIELDS if k in out}
  data = out.get('base', {}).get('data', {})
  for key in [k for k in data if k.endswith('_dir')]:
    del data[key]
  return out


def total_runs(config: ml_collections.ConfigDict, dims: list[space_lib.Dimension]) -> int:
  """Trials the sweep runs in all (points x seeds)."""
  if config.sampler == 'grid':
    size = space_lib.grid_size(dims)
    points = size if config.num_trials == 0 else min(config.num_trials, size)
  else:
    points = config.num_trials
  return points * config.seeds
