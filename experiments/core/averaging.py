"""Checkpoint averaging: the mean of the last N checkpoints' parameters, evaluated as one model.

Vaswani et al. (2017) report the base model's BLEU with the average of its last 5 checkpoints
(written at 10-minute intervals). Here:

  config.average_last_checkpoints = N   the final test evaluation after training uses the mean
                                        of the last N checkpoints (0 = off: the last state)
  python run.py eval --workdir DIR --average_last N
                                        the same for any split of a finished run

The mean is arithmetic, taken in float32 and cast back to each parameter's dtype:
  θ̄ = (1/N) Σ_{i=1..N} θ_i
The last N are the N highest checkpoint steps; the best checkpoint, which is kept apart from
the last `keep_checkpoints`, is never one of them unless it is also among the latest. A run saves
a checkpoint every `checkpoint_every_steps` and `eval_every_steps` and at its last step; config
validation (experiments/core/configuration.py) checks that it keeps and saves at least N.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from experiments.core.task import RunError


class AveragingError(RunError, ValueError):
  """More checkpoints asked for than the run holds."""


def mean_params(trees: Iterable[Any]) -> Any:
  """Elementwise mean of parameter trees of one structure, summed in float32 and cast back to
  the dtype of the first tree's leaves. Consumes `trees` one at a time (one extra tree in
  memory, not N)."""
  total, like, n = None, None, 0
  for tree in trees:
    f32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
    total = f32 if total is None else jax.tree.map(jnp.add, total, f32)
    like = tree if like is None else like
    n += 1
  if not n:
    raise ValueError('mean_params of no trees')
  return jax.tree.map(lambda s, x: (s / n).astype(x.dtype), total, like)


def last_steps(steps: list[int], n: int, directory: str) -> list[int]:
  """The `n` highest of `steps` (ascending); AveragingError naming how many exist otherwise."""
  steps = sorted(steps)
  if n < 1:
    raise AveragingError(f'the number of checkpoints to average must be >= 1, got {n}')
  if n > len(steps):
    raise AveragingError(
        f'cannot average the last {n} checkpoints: {directory} holds {len(steps)} '
        f'(steps {steps})'
    )
  return steps[-n:]


def averaged_state(
    steps: list[int], n: int, directory: str, restore: Callable[[int], Any]
) -> tuple[list[int], Any]:
  """(the last `n` of `steps`, the TrainState of the latest with the mean of their params).
  `restore(step)` -> TrainState; `directory` names the checkpoints in errors."""
  chosen = last_steps(steps, n, directory)
  latest = restore(chosen[-1])
  older = (restore(step).params for step in chosen[:-1])
  return chosen, latest.replace(params=mean_params(itertools.chain([latest.params], older)))


def checkpoints_saved(config: ml_collections.ConfigDict) -> int:
  """How many checkpoints an uninterrupted run of `config` saves: one at every multiple of
  `checkpoint_every_steps` or `eval_every_steps` and one at the last step."""
  total, c, e = config.num_train_steps, config.checkpoint_every_steps, config.eval_every_steps
  multiples = total // c + total // e - total // math.lcm(c, e)
  return multiples + (total % c != 0 and total % e != 0)
