"""Step-indexed training batches produced by a Grain pipeline (random access, worker processes).

`GrainEpochSource` is an `experiments.core.data.EpochSource` (the batch of step s is a pure function
of (seed, s), so resuming needs only the step) whose batches are built by Grain:

  grain.MapDataset.range(start, end)          step numbers
    .map(step -> fetch(plan(step), shard))    plan: e.g. (length, example indices) of the step;
                                              fetch: read those examples by random access,
                                              tokenize, pad -> a Batch
    .to_iter_dataset().mp_prefetch(workers)   `num_workers` processes (0: this process)

The examples come from any random-access record source (`len()` + `[i]`): an ArrayRecord file
(`grain.sources.ArrayRecordDataSource`), `tfds.data_source(...)` over a dataset prepared in the
`array_record` format, or a small in-memory list; only the plan (index arrays) and whatever the
planner needs (e.g. one length per example) are held in memory, never the corpus.

Several processes: each fetches only its own contiguous block of every batch's rows
(`shard=(index, count)`, default `(jax.process_index(), jax.process_count())`) and returns a
`ProcessLocalBatch` that records where its rows sit in the global batch;
`experiments/parallel/sharding.shard_batch` assembles the global array from the blocks.

Reusing it (e.g. for a language-model task): give `plan_epoch(epoch) -> [plan item, ...]`
(a pure function of the epoch) and `fetch(plan_item, step, shard) -> Batch` (module-level or
picklable: it runs in the workers), as `experiments/translation/grain_pipeline.py` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from experiments.core.data import Batch, EpochSource

# Upper end of the step range of a pipeline (Grain datasets are finite; runs are shorter).
_MAX_STEPS = 1 << 40


class ProcessLocalBatch(dict):
  """This process's rows [row_start, row_start + rows) of a batch of `global_rows` rows."""

  def __init__(self, arrays: Batch, *, global_rows: int, row_start: int):
    super().__init__(arrays)
    self.global_rows = global_rows
    self.row_start = row_start

  def __reduce__(self):  # pickled between Grain workers and the main process
    return (_rebuild_local_batch, (dict(self), self.global_rows, self.row_start))


def _rebuild_local_batch(arrays, global_rows, row_start) -> ProcessLocalBatch:
  return ProcessLocalBatch(arrays, global_rows=global_rows, row_start=row_start)


def row_block(rows: int, shard: tuple[int, int]) -> slice:
  """Rows of block `index` of `count` equal contiguous blocks of `rows` rows."""
  index, count = shard
  if rows % count:
    raise ValueError(f'a batch of {rows} rows does not split into {count} process blocks')
  size = rows // count
  return slice(index * size, (index + 1) * size)


def default_shard() -> tuple[int, int]:
  import jax  # pylint: disable=g-import-not-at-top

  return jax.process_index(), jax.process_count()


def ensure_flags_parsed() -> None:
  """Grain reads absl flags in its workers; outside `run.py` (tests, notebooks) mark them parsed."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class GrainEpochSource(EpochSource):
  """An EpochSource whose batches come out of a Grain pipeline (see the module docstring).

  Args:
    plan_epoch: epoch -> list of plan items (pure function of the epoch).
    fetch: (plan item, step, shard) -> this process's Batch of that step (a ProcessLocalBatch
      when shard[1] > 1). Runs in the Grain workers.
    seed, fingerprint: as EpochSource (checked on resume).
    num_workers: Grain worker processes (0 = fetch in this process).
    prefetch: batches each worker prepares ahead.
    shard: (process index, process count); default from jax.
  """

  def __init__(
      self,
      plan_epoch: Callable[[int], Sequence[Any]],
      fetch: Callable[[Any, int, tuple[int, int]], Batch],
      *,
      seed: int,
      fingerprint: dict[str, Any] | None = None,
      num_workers: int = 0,
      prefetch: int = 2,
      shard: tuple[int, int] | None = None,
  ):
    self.shard = shard or default_shard()
    self.num_workers = num_workers
    self.prefetch = prefetch
    self._fetch_item = fetch
    super().__init__(
        plan_epoch,
        lambda item, step: fetch(item, step, self.shard),
        seed=seed,
        fingerprint=fingerprint,
    )
    self._iterator: Iterator[Batch] | None = None
    self._next_step: int | None = None
    self._lock: threading.Lock | None = None

  def fetch_step(self, step: int) -> Batch:
    """The batch of `step` computed directly (what the pipeline's map does; Grain calls it
    from several threads, and the epoch-plan cache is not thread-safe, hence the lock)."""
    if self._lock is None:
      self._lock = threading.Lock()
    with self._lock:
      epoch, position = self.locate(step)
      item = self._plan(epoch)[position]
    return self._fetch_item(item, step, self.shard)

  def pipeline(self, start: int):
    """The Grain dataset of the batches of steps start, start + 1, ..."""
    import grain  # pylint: disable=g-import-not-at-top

    ensure_flags_parsed()
    ds = grain.MapDataset.range(start, _MAX_STEPS).map(self.fetch_step).to_iter_dataset()
    if self.num_workers > 0:
      ds = ds.mp_prefetch(
          grain.MultiprocessingOptions(
              num_workers=self.num_workers, per_worker_buffer_size=self.prefetch
          )
      )
    return ds

  def batch(self, step: int) -> Batch:
    """Sequential steps stream from the pipeline; any other step restarts it there."""
    if self._iterator is None or step != self._next_step:
      self.close()
      self._iterator = iter(self.pipeline(step))
    self._next_step = step + 1
    batch = next(self._iterator)
    # Own copies: the workers hand over arrays in shared memory.
    arrays = {k: np.array(v) for k, v in batch.items()}
    if isinstance(batch, ProcessLocalBatch):
      return ProcessLocalBatch(arrays, global_rows=batch.global_rows, row_start=batch.row_start)
    return arrays

  def close(self) -> None:
    """Stops the worker processes (if any)."""
    if self._iterator is not None and hasattr(self._iterator, 'close'):
      self._iterator.close()
    self._iterator = None

  def __getstate__(self):  # the workers get a copy without the running iterator
    state = dict(self.__dict__)
    state['_iterator'], state['_lock'] = None, None
    state['_cached_epoch'], state['_cached_plan'] = None, ()
    return state


def local_indices(
    indices: np.ndarray, rows: int, shard: tuple[int, int]
) -> tuple[np.ndarray, slice]:
  """(the entries of `indices` that fall in this process's block of a `rows`-row batch whose
  first len(indices) rows are real, that block)."""
  block = row_block(rows, shard)
  return indices[block.start : min(block.stop, len(indices))], block
