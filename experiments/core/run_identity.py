"""Is a resumed run the same experiment? The workdir's config.json against the new config.

A change in the task, model or data sections (but not a *_dir path) makes a different
experiment: `check` refuses it with the changed fields. Other changes (steps, learning rate,
eval cadence) are allowed and logged.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
from absl import logging

from experiments.core import checkpointing
from experiments.core import configuration
from experiments.core import model_config

IDENTITY_SECTIONS = ('task', 'model', 'data')  # changing these makes a different experiment


def is_identity_field(field: str) -> bool:
  """Fields that define the experiment (paths such as data.data_dir may change)."""
  return field.split('.')[0] in IDENTITY_SECTIONS and not field.endswith('_dir')


def _resolved_dtype(config: dict[str, Any]) -> dict[str, Any]:
  """`config` with model.dtype 'auto' replaced by what it means on this machine: a float32 run
  resumes under 'auto' on a CPU, an 'auto' run resumes on any machine of the same kind."""
  model = config.get('model')
  if isinstance(model, dict) and model.get('dtype') == model_config.AUTO_DTYPE:
    return {**config, 'model': {**model, 'dtype': model_config.auto_dtype()}}
  return config


def check(workdir: str, config: ml_collections.ConfigDict) -> None:
  """A resumed run must be the same experiment (task, model, data)."""
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    return
  old = configuration.to_dict(configuration.read_config(workdir))
  old = _resolved_dtype(model_config.with_new_fields(old))  # model fields added since: defaults
  changes = configuration.diff(old, _resolved_dtype(configuration.to_dict(config)))
  lines = [f'{field}: {a!r} -> {b!r}' for field, a, b in changes]
  identity = [line for line, (field, _, _) in zip(lines, changes) if is_identity_field(field)]
  if identity:
    raise checkpointing.CheckpointMismatchError(
        f'{workdir} holds checkpoints of a different experiment; changed fields:\n  '
        + '\n  '.join(identity)
        + '\nUse a new --workdir (or the old config to resume).'
    )
  if lines:
    logging.warning('Resuming with changed settings: %s', '; '.join(lines))
