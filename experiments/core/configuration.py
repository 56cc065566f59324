"""Trainer config fields shared by every experiment, their validation, config.json I/O.

A config file (configs/*.py) starts from `base_config()` and sets the task, the
`model` and `data` sections and whatever trainer fields it changes:

  task                 'classification' | 'translation' | 'lm' (experiments/core/registry.py)
  seed                 everything random derives from it (init, dropout, data order)
  num_train_steps      total optimizer steps
  batch_size           global batch size (split over the data-parallel devices)
  eval_batch_size      examples per evaluation batch
  optimizer, learning_rate, weight_decay, adam_b1, adam_b2, adam_eps, momentum,
  grad_clip_norm, schedule, warmup_steps                -> experiments/core/optim.py
  label_smoothing      used by the task's loss
  microbatches         gradient summed over this many slices of each batch in one step
  final_test_splits    splits evaluated after training, comma-separated ('' = all test splits)
  log_every_steps, eval_every_steps, checkpoint_every_steps, keep_checkpoints
  init_from, init_from_include, init_from_exclude
                       start from another run's parameters: 'WORKDIR[:STEP|best]' and path
                       regexes of those copied / left fresh (experiments/core/init_from.py)
  average_last_checkpoints
                       the final test evaluation uses the mean of the last N checkpoints
                       (experiments/core/averaging.py); 0 = off
  eval_loss_every_steps, early_stopping_patience, early_stopping_min_delta
                       cheap validation-loss evaluations and early stopping on them
                       (experiments/core/early_stopping.py); 0 = off
  mesh.data, mesh.fsdp, mesh.tensor
                       device mesh (experiments/parallel/sharding.py): data-parallel, fully-sharded
                       data-parallel and tensor-parallel sizes; their product is the device
                       count, one of them may be -1 (fills the rest)
"""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any

import ml_collections

from experiments.core import optim
from experiments.core.task import ConfigError, RunError


def base_config() -> ml_collections.ConfigDict:
  """Trainer defaults; experiment configs override what they need."""
  c = ml_collections.ConfigDict()
  c.task = ''
  c.seed = 0
  c.num_train_steps = 1000
  c.batch_size = 128
  c.eval_batch_size = 500

  c.optimizer = 'adamw'
  c.learning_rate = 1e-3
  c.weight_decay = 1e-4
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.momentum = 0.9
  c.grad_clip_norm = 1.0
  c.schedule = 'cosine'
  c.warmup_steps = 100
  c.label_smoothing = 0.0
  # Gradient of each batch summed over this many equal slices inside the one compiled step
  # (lax.scan): smaller activations (CPU caches, memory), same update; 1 = whole batch at once.
  c.microbatches = 1
  # Splits evaluated once after training, comma-separated ('test_2016'); '' = every test split.
  c.final_test_splits = ''

  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 3
  # Validation loss only (no decoding) every N steps, and early stopping on it (0 = off); see
  # experiments/core/early_stopping.py.
  c.eval_loss_every_steps = 0
  c.early_stopping_patience = 0
  c.early_stopping_min_delta = 0.0
  # Parameters from another run's checkpoint, 'WORKDIR[:STEP|best]' ('' = off), those whose
  # path matches include ('' = all) and not exclude ('' = none); see experiments/core/init_from.py.
  c.init_from = ''
  c.init_from_include = ''
  c.init_from_exclude = ''
  # The final test evaluation with the mean of the last N checkpoints (0 = off: the last state);
  # see experiments/core/averaging.py. Needs keep_checkpoints >= N.
  c.average_last_checkpoints = 0

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # batch split, parameters replicated (-1 = the devices left over)
  c.mesh.fsdp = 1  # batch split AND parameters/optimizer state split (FSDP)
  c.mesh.tensor = 1  # attention heads / FFN hidden / vocabulary split (tensor parallel)
  return c


def require(ok: bool, field: str, message: str) -> None:
  """Raises ConfigError(field, message) unless `ok` (the one config check helper)."""
  if not ok:
    raise ConfigError(field, message)


def validate_trainer_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks the shared trainer fields; raises ConfigError naming the field."""
  require(
      isinstance(config.seed, int) and config.seed >= 0, 'seed', f'must be >= 0, got {config.seed}'
  )
  require(
      config.num_train_steps > 0, 'num_train_steps', f'must be > 0, got {config.num_train_steps}'
  )
  require(config.batch_size > 0, 'batch_size', f'must be > 0, got {config.batch_size}')
  require(
      config.eval_batch_size > 0, 'eval_batch_size', f'must be > 0, got {config.eval_batch_size}'
  )
  require(
      config.optimizer in optim.OPTIMIZERS,
      'optimizer',
      f'unknown optimizer {config.optimizer!r}; choose one of {optim.OPTIMIZERS}',
  )
  require(
      config.schedule in optim.SCHEDULES,
      'schedule',
      f'unknown schedule {config.schedule!r}; choose one of {optim.SCHEDULES}',
  )
  require(
      math.isfinite(config.learning_rate) and config.learning_rate > 0,
      'learning_rate',
      f'must be a positive number, got {config.learning_rate}',
  )
  require(config.weight_decay >= 0, 'weight_decay', f'must be >= 0, got {config.weight_decay}')
  for name in ('adam_b1', 'adam_b2'):
    require(0 <= config[name] < 1, name, f'must be in [0, 1), got {config[name]}')
  require(config.adam_eps > 0, 'adam_eps', f'must be > 0, got {config.adam_eps}')
  require(0 <= config.momentum < 1, 'momentum', f'must be in [0, 1), got {config.momentum}')
  require(
      config.grad_clip_norm >= 0,
      'grad_clip_norm',
      f'must be >= 0 (0 = off), got {config.grad_clip_norm}',
  )
  require(config.warmup_steps >= 0, 'warmup_steps', f'must be >= 0, got {config.warmup_steps}')
  if config.schedule == 'noam':
    require(
        'model' in config and 'd_model' in config.model,
        'model.d_model',
        "the 'noam' schedule needs config.model.d_model",
    )
  require(
      0 <= config.label_smoothing < 1,
      'label_smoothing',
      f'must be in [0, 1), got {config.label_smoothing}',
  )
  for name in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps', 'keep_checkpoints'):
    require(config[name] > 0, name, f'must be > 0, got {config[name]}')
  from experiments.core import averaging, init_from  # pylint: disable=g-import-not-at-top

  n = config.get('average_last_checkpoints', 0)
  require(
      isinstance(n, int) and 0 <= n <= config.keep_checkpoints,
      'average_last_checkpoints',
      f'must be in [0, keep_checkpoints={config.keep_checkpoints}] (0 = off; the last N '
      f'checkpoints are kept to be averaged), got {n}',
  )
  saved = averaging.checkpoints_saved(config)
  require(
      n <= saved,
      'average_last_checkpoints',
      f'{n} is more than the {saved} checkpoint(s) this run saves (every checkpoint_every_steps '
      'and eval_every_steps, and at the last step)',
  )
  init_from.validate(config)
  for name in ('eval_loss_every_steps', 'early_stopping_patience'):
    value = config.get(name, 0)
    require(isinstance(value, int) and value >= 0, name, f'must be >= 0 (0 = off), got {value}')
  delta = config.get('early_stopping_min_delta', 0.0)
  require(
      math.isfinite(delta) and delta >= 0,
      'early_stopping_min_delta',
      f'must be a finite number >= 0, got {delta}',
  )
  from experiments.parallel import sharding  # pylint: disable=g-import-not-at-top

  try:
    data, fsdp, _ = sharding.mesh_shape(config.mesh, num_devices)
  except ValueError as e:
    field, _, message = str(e).partition(': ')
    raise ConfigError(field, message) from None
  require(
      config.batch_size % (data * fsdp) == 0,
      'batch_size',
      f'{config.batch_size} is not divisible by the {data * fsdp} data-parallel devices '
      f'(mesh.data={data} x mesh.fsdp={fsdp})',
  )
  micro = config.get('microbatches', 1)
  require(isinstance(micro, int) and micro >= 1, 'microbatches', f'must be >= 1, got {micro}')
  require(
      config.batch_size % (micro * data * fsdp) == 0,
      'microbatches',
      f'batch_size={config.batch_size} does not split into {micro} slices of whole rows on each '
      f'of the {data * fsdp} data-parallel devices',
  )
  row_multiple = config.get('data', {}).get('row_multiple', 0)
  require(
      micro == 1 or not row_multiple or row_multiple % (micro * data * fsdp) == 0,
      'microbatches',
      f'data.row_multiple={row_multiple} is not a multiple of microbatches x data-parallel '
      f'devices = {micro * data * fsdp}',
  )
  require(
      not row_multiple or row_multiple % (data * fsdp) == 0,
      'data.row_multiple',
      f'{row_multiple} is not a multiple of the {data * fsdp} data-parallel devices '
      f'(mesh.data={data} x mesh.fsdp={fsdp}); batches would not split evenly',
  )


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Full validation (trainer + task). Raises ConfigError; does no I/O."""
  from experiments.core import registry  # pylint: disable=g-import-not-at-top

  require(bool(config.get('task')), 'task', 'is empty; set it in the config file')
  task_class = registry.task_class(config.task)
  validate_trainer_config(config, num_devices)
  task_class.validate_config(config)


def with_overrides(
    config: ml_collections.ConfigDict, values: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with `values` ({dotted field: value}, e.g. {'model.d_model': 64}) set."""
  config = copy.deepcopy(config)
  for dotted, value in values.items():
    *parents, leaf = dotted.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Plain JSON-able dict (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  path = os.path.join(workdir, 'config.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(to_dict(config), f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


class WorkdirError(RunError, FileNotFoundError):
  """The directory is not a workdir of `run.py train`."""


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote to `workdir/config.json` (locked)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise WorkdirError(f'{path} not found: is {workdir!r} a workdir of `run.py train`?')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.lock()
  return config


def with_new_defaults(old: dict[str, Any]) -> dict[str, Any]:
  """`old` (a config written by an earlier version) plus the trainer fields added to
  `base_config()` since, at their defaults (which reproduce the old behaviour)."""
  out = dict(old)
  for key, value in base_config().to_dict().items():
    if key not in out and not isinstance(value, dict):
      out[key] = value
  return out


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = '') -> list[tuple[str, Any, Any]]:
  """(dotted field, old value, new value) for every field that differs."""
  out = []
  for key in sorted(set(old) | set(new)):
    name = f'{prefix}{key}'
    a, b = old.get(key, '<missing>'), new.get(key, '<missing>')
    if isinstance(a, dict) and isinstance(b, dict):
      out += diff(a, b, name + '.')
    elif a != b:
      out.append((name, a, b))
  return out
