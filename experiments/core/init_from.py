"""Runs that start from other runs: a new run's parameters copied from another run's checkpoint.

  --config.init_from=WORKDIR[:STEP|best|latest]   '' = off; WORKDIR alone = its latest checkpoint
  --config.init_from_include=REGEX                 '' = every parameter
  --config.init_from_exclude=REGEX                 '' = none

A parameter is copied when its path matches `init_from_include` and not `init_from_exclude`
(`re.search` over the path); every other parameter keeps this run's fresh initialisation. The
optimizer state starts fresh (step 0, zero Adam moments), as big_vision's `model_init`, MaxText's
`load_parameters_path` and nanoGPT's `init_from`. Only a run without checkpoints of its own is
initialised this way: a resumed run continues from its own latest checkpoint.

Paths are the '/'-joined parameter names (experiments/parallel/partitioning.path_string):
  classification  cls, patch_embedding/kernel, pos_embedding/embedding, head/kernel,
                  encoder/layer_0/self_attention/query/kernel, encoder/layer_0/ffn/wi/kernel,
                  encoder/layer_0/ffn_norm/scale, encoder/final_norm/scale
  translation     src_embed/embedding, tgt_embed/embedding (embed/embedding when shared),
                  src_pos/embedding, tgt_pos/embedding (learned positions), output_proj/kernel,
                  encoder/layer_<i>/{self_attention,ffn,self_attention_norm,ffn_norm}/...,
                  decoder/layer_<i>/{self_attention,cross_attention,ffn,*_norm}/...,
                  encoder/final_norm/..., decoder/final_norm/... (pre-LN)
  lm              embed/embedding, pos_embedding/embedding, output_proj/kernel (untied),
                  decoder/layer_<i>/{self_attention,ffn,self_attention_norm,ffn_norm}/...,
                  decoder/final_norm/...
With model.scan_layers=True a stack's layers are one leaf with a leading layer axis
(`encoder/layers/self_attention/query/kernel`); both runs must use the same layout
(experiments/core/convert_layout.py converts a workdir). E.g. an LM's blocks into a translation
decoder (same d_model, heads, d_ff, layers):
  --config.init_from=/tmp/lm --config.init_from_include='^decoder/'
  --config.init_from_exclude='cross_attention'

Every selected parameter must exist in the source with the same shape and dtype; otherwise
`InitFromError` lists the mismatched paths before the new run writes anything.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from experiments.core import checkpointing
from experiments.core import registry
from experiments.core.task import ConfigError, RunError
from experiments.parallel import partitioning

CHECKPOINTS = 'checkpoints'  # the source's checkpoint folder (experiments/core/loop.checkpoint_dir)
MAX_LISTED = 20  # mismatched paths named in the error before '... and N more'


class InitFromError(RunError, ValueError):
  """The source checkpoint does not fit the selected parameters of this model."""


Spec = tuple[str, str | int]  # (source workdir, 'latest' | 'best' | step)


def parse(value: str) -> Spec:
  """'WORKDIR[:STEP|best|latest]' -> (workdir, which); a ':' followed by anything else is part
  of WORKDIR."""
  workdir, sep, which = value.rpartition(':')
  if sep and (which in ('latest', 'best') or which.isdigit()):
    return workdir, int(which) if which.isdigit() else which
  return value, 'latest'


def validate(config: ml_collections.ConfigDict) -> None:
  """ConfigError for an unusable init_from / include / exclude value (no I/O)."""
  for field in ('init_from_include', 'init_from_exclude'):
    try:
      re.compile(config.get(field, ''))
    except re.error as e:
      raise ConfigError(field, f'not a regular expression ({e}): {config.get(field)!r}') from None
  if config.get('init_from', ''):
    workdir, _ = parse(config.init_from)
    if not workdir.strip():
      raise ConfigError('init_from', f"expected 'WORKDIR[:STEP|best]', got {config.init_from!r}")


def path_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{'/'-joined path: (shape, dtype name)} of every leaf (arrays, ShapeDtypeStructs, metadata)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
      partitioning.path_string(p): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
      for p, leaf in leaves
  }


def select(paths: list[str], include: str, exclude: str) -> list[str]:
  """The paths matching `include` ('' = all) and not `exclude` ('' = none), in order."""
  return [
      p
      for p in paths
      if (not include or re.search(include, p)) and not (exclude and re.search(exclude, p))
  ]


def mismatches(
    source: dict[str, tuple[tuple[int, ...], str]],
    target: dict[str, tuple[tuple[int, ...], str]],
    selected: list[str],
) -> list[str]:
  """'path: source S vs this model T' for each selected path that is missing in `source` or
  differs in shape or dtype (specs as from `path_specs`)."""
  out = []
  for path in selected:
    if path not in source:
      out.append(f'{path}: not in the source')
    elif source[path] != target[path]:
      (s_shape, s_dtype), (t_shape, t_dtype) = source[path], target[path]
      out.append(f'{path}: source {s_shape} {s_dtype} vs this model {t_shape} {t_dtype}')
  return out


def merge(fresh: Any, copied: dict[str, Any]) -> Any:
  """`fresh` with the leaves whose path is a key of `copied` replaced by its value."""
  return jax.tree_util.tree_map_with_path(
      lambda p, leaf: copied.get(partitioning.path_string(p), leaf), fresh
  )


def _source_task(workdir: str) -> str:
  """config.task of the source run (its best checkpoint is chosen by that task's metric)."""
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      return json.load(f)['task']
  except (OSError, ValueError, KeyError) as e:
    raise checkpointing.CheckpointNotFoundError(
        f'config.init_from: cannot read the task of the source from {path} ({e})'
    ) from None


def _resolve(spec: Spec) -> tuple[str, int]:
  """(source checkpoint folder, step) of `spec`; RunError when it is not there."""
  workdir, which = spec
  directory = os.path.join(workdir, CHECKPOINTS)
  if not os.path.isdir(directory):
    raise checkpointing.CheckpointNotFoundError(
        f'config.init_from: {directory} not found: is {workdir!r} a workdir of `run.py train`?'
    )
  best_metric, best_mode = None, 'max'
  if which == 'best':
    task_class = registry.task_class(_source_task(workdir))
    best_metric, best_mode = f'eval/{task_class.best_metric}', task_class.best_mode
  ckpt = checkpointing.Checkpointer(
      directory, read_only=True, best_metric=best_metric, best_mode=best_mode
  )
  try:
    return ckpt.directory, ckpt.resolve(which)
  finally:
    ckpt.close()


def _source_params(directory: str, step: int) -> dict[str, tuple[tuple[int, ...], str]]:
  ckpt = checkpointing.Checkpointer(directory, read_only=True)
  try:
    stored = ckpt.manager.item_metadata(step)['state']
  finally:
    ckpt.close()
  return getattr(stored, 'tree', stored)['params']


def _read(directory: str, step: int, stored_params: Any, selected: list[str]) -> dict[str, Any]:
  """{path: NumPy array} of the selected parameters of checkpoint `step` (no optimizer state)."""
  wanted = set(selected)
  target = jax.tree_util.tree_map_with_path(
      lambda p, m: jax.ShapeDtypeStruct(m.shape, m.dtype)
      if partitioning.path_string(p) in wanted
      else None,
      stored_params,
  )
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
  with ocp.PyTreeCheckpointer() as reader:
    restored = reader.restore(
        os.path.join(directory, str(step), 'state'),
        args=ocp.args.PyTreeRestore(
            item={'params': target},
            restore_args={'params': restore_args},
            partial_restore=True,
        ),
    )
  leaves = jax.tree_util.tree_flatten_with_path(restored['params'])[0]
  return {partitioning.path_string(p): np.asarray(v) for p, v in leaves}


def load(config: ml_collections.ConfigDict, params: Any, shardings: Any) -> Any:
  """`params` (this run's fresh initialisation, placed by `shardings`) with the parameters
  `config.init_from` selects copied from the source checkpoint; `params` unchanged when
  init_from is ''. Raises InitFromError (mismatches) or a RunError (no such checkpoint)."""
  if not config.get('init_from', ''):
    return params
  spec = parse(config.init_from)
  directory, step = _resolve(spec)
  stored = _source_params(directory, step)
  target = path_specs(params)
  selected = select(list(target), config.init_from_include, config.init_from_exclude)
  if not selected:
    raise InitFromError(
        f'config.init_from: init_from_include={config.init_from_include!r} and '
        f'init_from_exclude={config.init_from_exclude!r} select no parameter of this model'
    )
  bad = mismatches(path_specs(stored), target, selected)
  if bad:
    more = f'; ... and {len(bad) - MAX_LISTED} more' if len(bad) > MAX_LISTED else ''
    raise InitFromError(
        f'config.init_from: {directory}/{step} does not fit {len(bad)} selected parameter(s): '
        + '; '.join(bad[:MAX_LISTED])
        + more
    )
  values = _read(directory, step, stored, selected)
  flat_shardings = {
      partitioning.path_string(p): s for p, s in jax.tree_util.tree_flatten_with_path(shardings)[0]
  }
  copied = {
      path: jax.make_array_from_callback(
          value.shape, flat_shardings[path], lambda index, v=value: v[index]
      )
      for path, value in values.items()
  }
  logging.info(
      'init_from %s/%d: copied %d of %d parameters (%s%s); the other %d keep their fresh '
      'initialisation; the optimizer state starts fresh.',
      directory,
      step,
      len(copied),
      len(target),
      ', '.join(selected[:5]),
      ', ...' if len(selected) > 5 else '',
      len(target) - len(copied),
  )
  return merge(params, copied)
