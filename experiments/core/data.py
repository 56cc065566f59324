"""Step-indexed, deterministic training data (exact resume) and eval batching helpers.

The batch for training step `s` is a pure function of (seed, s): epoch `e` is laid
out by `plan_epoch(e)` (e.g. a permutation seeded with (seed, e)), so resuming at any
step needs no iterator replay — only the step, which the checkpoint stores.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]

DATA_DIR_ENV = 'TRANSFORMER_DATA_DIR'


def data_root(data_config: Any) -> str | None:
  """config.data.data_dir, else $TRANSFORMER_DATA_DIR, else None (the folder holding local
  copies of the datasets: multi30k/, mnist/, ...)."""
  return data_config.data_dir or os.environ.get(DATA_DIR_ENV) or None


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
  """NumPy generator that depends only on (seed, epoch, stream)."""
  return np.random.default_rng(np.random.SeedSequence([seed, epoch, stream]))


class EpochSource:
  """Training batches laid out epoch by epoch (implements `experiments.core.task.TrainSource`).

  Args:
    plan_epoch: epoch -> list of batch plans (anything `fetch` understands, e.g. index
      arrays). Must be a pure function of the epoch (and the seed it closes over).
    fetch: (plan, step) -> Batch. `step` lets augmentation be a pure function of step.
    seed: stored in the iterator state and checked on resume.
    fingerprint: JSON-able description of the data (e.g. sizes), checked on resume.
  """

  def __init__(
      self,
      plan_epoch: Callable[[int], Sequence[Any]],
      fetch: Callable[[Any, int], Batch],
      *,
      seed: int,
      fingerprint: dict[str, Any] | None = None,
  ):
    self._plan_epoch = plan_epoch
    self._fetch = fetch
    self.seed = seed
    self.fingerprint = dict(fingerprint or {})
    self._epoch_starts = [0]  # first step of epoch i; grows lazily
    self._cached_epoch: int | None = None
    self._cached_plan: Sequence[Any] = ()

  def _plan(self, epoch: int) -> Sequence[Any]:
    if epoch != self._cached_epoch:
      plan = self._plan_epoch(epoch)
      if not plan:
        raise ValueError(f'epoch {epoch} has no batches (dataset smaller than one batch?)')
      self._cached_epoch, self._cached_plan = epoch, plan
    return self._cached_plan

  def locate(self, step: int) -> tuple[int, int]:
    """(epoch, position within the epoch) of training step `step`."""
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    while self._epoch_starts[-1] <= step:
      epoch = len(self._epoch_starts) - 1
      self._epoch_starts.append(self._epoch_starts[-1] + len(self._plan(epoch)))
    epoch = bisect.bisect_right(self._epoch_starts, step) - 1
    return epoch, step - self._epoch_starts[epoch]

  def batch(self, step: int) -> Batch:
    epoch, position = self.locate(step)
    return self._fetch(self._plan(epoch)[position], step)

  def state(self, step: int) -> dict[str, Any]:
    epoch, position = self.locate(step)
    return {
        'step': int(step),
        'epoch': int(epoch),
        'position': int(position),
        'seed': int(self.seed),
        **self.fingerprint,
    }

  def check_state(self, state: dict[str, Any]) -> None:
    expected = {'seed': self.seed, **self.fingerprint}
    diffs = [
        f'{k}: checkpoint {state.get(k)!r} vs now {v!r}'
        for k, v in expected.items()
        if state.get(k) != v
    ]
    if diffs:
      raise ValueError(
          'cannot resume the data iterator exactly; the data differ from '
          'the checkpointed run: ' + '; '.join(diffs)
      )
    if 'step' in state:
      epoch, position = self.locate(int(state['step']))
      if (epoch, position) != (state.get('epoch'), state.get('position')):
        raise ValueError(
            f'checkpointed iterator position (epoch {state.get("epoch")}, '
            f'position {state.get("position")}) does not match step '
            f'{state["step"]} (epoch {epoch}, position {position}).'
        )


class ArraySource(EpochSource):
  """In-memory arrays, reshuffled every epoch from (seed, epoch); fixed batch size.

  The remainder of each epoch (< batch_size examples) is dropped, so every batch has
  the same shape (one compilation). `augment(batch, rng)` runs per step with a
  generator seeded by (seed, step).
  """

  def __init__(
      self,
      arrays: dict[str, np.ndarray],
      batch_size: int,
      *,
      seed: int,
      augment: Callable[[Batch, np.random.Generator], Batch] | None = None,
  ):
    sizes = {len(v) for v in arrays.values()}
    if len(sizes) != 1:
      raise ValueError(f'arrays have different lengths: { {k: len(v) for k, v in arrays.items()} }')
    (n,) = sizes
    if n < batch_size:
      raise ValueError(f'{n} training examples are fewer than batch_size={batch_size}')
    self.arrays = arrays
    self.batch_size = batch_size
    self.augment = augment
    steps_per_epoch = n // batch_size

    def plan_epoch(epoch: int) -> list[np.ndarray]:
      perm = epoch_rng(seed, epoch).permutation(n)
      return [perm[i * batch_size : (i + 1) * batch_size] for i in range(steps_per_epoch)]

    def fetch(indices: np.ndarray, step: int) -> Batch:
      batch = {k: v[indices] for k, v in arrays.items()}
      if self.augment is not None:
        batch = self.augment(batch, np.random.default_rng(np.random.SeedSequence([seed, step, 1])))
      return batch

    super().__init__(
        plan_epoch, fetch, seed=seed, fingerprint={'num_examples': n, 'batch_size': batch_size}
    )
    self.steps_per_epoch = steps_per_epoch


class Prefetcher:
  """Wraps a TrainSource: while step s trains, the batch of step s + 1 is assembled on a
  background thread (host work overlaps the compiled step).

  Same batches, same order: `batch(step)` returns `source.batch(step)`, so the data stay a pure
  function of the step and resuming is exact. A step other than the prefetched one is fetched
  directly. Every call into the wrapped source holds one lock (sources need not be
  thread-safe). Call `close()` when done.
  """

  def __init__(self, source: Any, end: int | None = None):
    self.source = source
    self.end = end  # no prefetch of steps >= end
    self._lock = threading.Lock()
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='prefetch')
    self._pending: tuple[int, concurrent.futures.Future] | None = None

  def _fetch(self, step: int) -> Batch:
    with self._lock:
      return self.source.batch(step)

  def batch(self, step: int) -> Batch:
    pending, self._pending = self._pending, None
    if pending is not None and pending[0] == step:
      batch = pending[1].result()
    else:
      if pending is not None:
        pending[1].cancel()
      batch = self._fetch(step)
    if self.end is None or step + 1 < self.end:
      self._pending = (step + 1, self._pool.submit(self._fetch, step + 1))
    return batch

  def state(self, step: int) -> dict[str, Any]:
    with self._lock:
      return self.source.state(step)

  def check_state(self, state: dict[str, Any]) -> None:
    with self._lock:
      self.source.check_state(state)

  def close(self) -> None:
    """Drops a pending prefetch and stops the thread."""
    if self._pending is not None:
      self._pending[1].cancel()
      self._pending = None
    self._pool.shutdown(wait=True)


def batched(arrays: dict[str, np.ndarray], batch_size: int) -> Iterator[Batch]:
  """Fixed-order batches over all examples; the last one may be short."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    yield {k: v[start : start + batch_size] for k, v in arrays.items()}


def pad_batch(batch: Batch, size: int) -> Batch:
  """Pads axis 0 with zeros up to `size`; `weight` is 1 for real rows, 0 for padding."""
  n = len(next(iter(batch.values())))
  if n > size:
    raise ValueError(f'batch of {n} does not fit in {size}')
  batch = dict(batch)
  batch.setdefault('weight', np.ones((n,), np.float32))
  if n == size:
    return batch
  return {
      k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)]) for k, v in batch.items()
  }
