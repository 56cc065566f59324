"""Orbax checkpoints: keep the last N and the best, exact-resume payload, safe restore.

A checkpoint step directory `workdir/checkpoints/<step>/` holds two items:
  state  the TrainState pytree (params, optimizer state, step, base RNG key)
  data   JSON: the data iterator position (experiments.core.task.TrainSource.state)
plus orbax's `metrics` (the validation metrics, used to keep the best one).

Saves are synchronous and atomic (orbax writes to a temporary directory and renames
it when complete); old checkpoints are deleted only after a newer one is committed.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as policies

from experiments.parallel import partitioning
from experiments.core.task import RunError


class CheckpointMismatchError(RunError, ValueError):
  """The checkpoint was written by a different model/experiment."""


class CheckpointNotFoundError(RunError, FileNotFoundError):
  """No checkpoint (or not the requested step)."""


class UnreadableCheckpointError(RunError, RuntimeError):
  """No readable checkpoint among the candidates."""


class WorkdirLockedError(RunError, RuntimeError):
  """Another process trains in this workdir."""


class WorkdirLock:
  """Exclusive lock on `workdir/.lock` so two runs cannot train into one workdir.

  Uses flock, which the OS releases when the process dies (even on kill -9). In a
  multi-process run, process 0 takes `.lock` (so a second run of any size is refused) and
  process i > 0 takes `.lock.<i>` (so two processes with the same --process_id are refused).
  """

  def __init__(self, workdir: str):
    index = jax.process_index()
    self.path = os.path.join(workdir, '.lock' if index == 0 else f'.lock.{index}')
    self._file = None

  def __enter__(self) -> 'WorkdirLock':
    f = open(self.path, 'a+')  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      owner = f.read().strip() or 'unknown'
      f.close()
      raise WorkdirLockedError(
          f'{os.path.dirname(self.path)} is in use by another run (pid {owner}); '
          'wait for it to finish or use another --workdir.'
      ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {partitioning.path_string(p): tuple(leaf.shape) for p, leaf in leaves}


def shape_mismatches(stored: Any, target: Any) -> list[str]:
  """Lines describing leaves whose shapes (or presence) differ."""
  a, b = _shapes(stored), _shapes(target)
  lines = []
  for name in sorted(set(a) | set(b)):
    if name not in b:
      lines.append(f'  {name}: in checkpoint {a[name]}, not in this model')
    elif name not in a:
      lines.append(f'  {name}: not in checkpoint, this model {b[name]}')
    elif a[name] != b[name]:
      lines.append(f'  {name}: checkpoint {a[name]} vs this model {b[name]}')
  return lines


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with the policies of this project."""

  def __init__(
      self,
      directory: str,
      *,
      keep: int = 3,
      best_metric: str | None = None,
      best_mode: str = 'max',
      read_only: bool = False,
  ):
    self.directory = os.path.abspath(directory)
    self.best_metric = best_metric
    self.read_only = read_only  # never saves (eval / inference); keeps every step
    self.unreadable: set[int] = set()  # steps restore() found unreadable: save() replaces them
    policy = [policies.LatestN(n=keep)]
    best_fn = None
    if best_metric:
      best_fn = lambda m: m[best_metric]  # pylint: disable=unnecessary-lambda-assignment
      policy.append(
          policies.BestN(
              get_metric_fn=best_fn,
              reverse=(best_mode == 'min'),
              n=1,
              keep_checkpoints_without_metrics=False,
          )
      )
    options = ocp.CheckpointManagerOptions(
        best_fn=best_fn,
        best_mode=best_mode,
        preservation_policy=None if read_only else policies.AnyPreservationPolicy(policy),
        enable_async_checkpointing=False,
        create=not read_only,
    )
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_handlers={
            'state': ocp.StandardCheckpointHandler(),
            'data': ocp.JsonCheckpointHandler(),
        },
    )

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    return self.manager.best_step()

  def save(
      self,
      step: int,
      state: Any,
      data_state: dict[str, Any],
      metrics: dict[str, float] | None = None,
  ) -> None:
    if self.read_only:
      raise RuntimeError('this Checkpointer is read-only')
    if step in self.all_steps():
      if step not in self.unreadable:
        return  # already saved (e.g. final save right after a periodic one)
      self.manager.delete(step)  # an unreadable checkpoint of this step: write it anew
      self.unreadable.discard(step)
    self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        ),
        metrics=metrics,
        force=True,
    )
    self.manager.wait_until_finished()

  def resolve(self, which: str | int) -> int:
    """'latest' | 'best' | step number -> an existing step."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointNotFoundError(f'no checkpoints in {self.directory}')
    if which == 'latest':
      return steps[-1]
    if which == 'best':
      best = self.best_step()
      return steps[-1] if best is None else best
    step = int(which)
    if step not in steps:
      raise CheckpointNotFoundError(
          f'no checkpoint for step {step} in {self.directory}; available: {steps}'
      )
    return step

  def _check_shapes(self, step: int, abstract_state: Any) -> None:
    stored = self.manager.item_metadata(step)['state']
    stored = getattr(stored, 'tree', stored)
    lines = shape_mismatches(stored, abstract_state)
    params = [line for line in lines if line.startswith('  params/')]
    if params and len(params) < len(lines):  # optimizer state mirrors the params
      lines = params + [f'  (and {len(lines) - len(params)} optimizer-state leaves)']
    if lines:
      raise CheckpointMismatchError(
          f'checkpoint {self.directory}/{step} does not fit this config; mismatched shapes:\n'
          + '\n'.join(lines)
      )

  def restore(self, which: str | int, abstract_state: Any) -> tuple[int, Any, dict[str, Any]]:
    """Restores (step, state, data_state) into `abstract_state` (ShapeDtypeStructs with
    shardings). For 'latest'/'best', an unreadable checkpoint is skipped with a warning
    in favour of the next older one."""
    first = self.resolve(which)
    candidates = [first]
    if which in ('latest', 'best'):
      candidates += [s for s in reversed(self.all_steps()) if s < first]
    errors = []
    for step in candidates:
      try:
        self._check_shapes(step, abstract_state)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        if errors:
          logging.warning('Restored the older checkpoint %d instead.', step)
        return step, restored['state'], dict(restored['data'] or {})
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        msg = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
        logging.warning(
            'Checkpoint %s/%d is unreadable (%s); falling back to the previous one.',
            self.directory,
            step,
            msg,
        )
        errors.append(f'  step {step}: {msg}')
        self.unreadable.add(step)
    raise UnreadableCheckpointError(
        f'no readable checkpoint in {self.directory}:\n' + '\n'.join(errors)
    )

  def close(self) -> None:
    self.manager.close()
