"""Token-budget batching with length buckets (few distinct shapes, little padding).

Every sentence pair goes to the bucket of its padded length
`L = round_up(max(len(source), len(target)), length_multiple)`. A bucket's batches have
`rows(L) = min(max_rows, tokens_per_batch // L)` rows (a multiple of `row_multiple`), so
every batch holds about `tokens_per_batch` tokens and there is one compiled shape per
bucket. Epoch `e` shuffles within buckets and then the batch order with a generator seeded
by (seed, e): the batch of training step `s` is a pure function of (seed, s).

Batch layout (NumPy, int32 ids, pad 0):
  source      [rows, L]  source ids + eos
  target_in   [rows, L]  bos + target ids          (decoder input)
  target_out  [rows, L]  target ids + eos          (labels)
  weight      [rows]     1.0 real pair, 0.0 padding row
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np

from experiments.core.data import EpochSource, epoch_rng
from experiments.text.tokenizer import BOS_ID, EOS_ID

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Bucketing:
  tokens_per_batch: int  # budget of padded positions per side (rows * L)
  max_rows: int  # cap on sentences per batch
  length_multiple: int  # bucket lengths are multiples of this
  row_multiple: int  # rows are multiples of this (data-parallel devices divide it)

  def padded_length(self, n: int) -> int:
    m = self.length_multiple
    return max(m, -(-n // m) * m)

  def rows(self, length: int) -> int:
    rows = min(self.max_rows, self.tokens_per_batch // length)
    rows = rows // self.row_multiple * self.row_multiple
    return max(rows, self.row_multiple)


def pair_lengths(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> np.ndarray:
  """Length of each pair as the model sees it: max(len(source), len(target)) (both incl. eos)."""
  return np.array([max(len(s), len(t)) for s, t in zip(sources, targets)], dtype=np.int64)


def make_batch(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]] | None,
    length: int,
    rows: int,
) -> Batch:
  """Pads the given pairs into a [rows, length] batch (missing rows get weight 0).

  `targets` are label sequences ending in eos; the decoder input is bos + labels[:-1].
  """
  n = len(sources)
  if n > rows:
    raise ValueError(f'{n} sentences do not fit in a batch of {rows} rows')
  batch = {'source': np.zeros((rows, length), np.int32), 'weight': np.zeros((rows,), np.float32)}
  batch['weight'][:n] = 1.0
  for i, s in enumerate(sources):
    batch['source'][i, : len(s)] = s[:length]
  if targets is not None:
    batch['target_in'] = np.zeros((rows, length), np.int32)
    batch['target_out'] = np.zeros((rows, length), np.int32)
    for i, t in enumerate(targets):
      t = list(t[:length])
      batch['target_out'][i, : len(t)] = t
      batch['target_in'][i, : len(t)] = [BOS_ID] + t[:-1]
  return batch


def truncate(ids: Sequence[int], max_len: int) -> list[int]:
  """At most `max_len` ids, keeping a final eos."""
  ids = list(ids)
  if len(ids) <= max_len:
    return ids
  return ids[: max_len - 1] + [EOS_ID]


def length_buckets(lengths: np.ndarray, bucketing: Bucketing) -> dict[int, np.ndarray]:
  """{padded length L: indices (ascending) of the pairs of length bucket L}, L ascending."""
  m = bucketing.length_multiple
  padded = np.maximum(m, -(-np.asarray(lengths, np.int64) // m) * m)
  return {int(L): np.flatnonzero(padded == L) for L in np.unique(padded)}


def bucket_plan(
    buckets: dict[int, np.ndarray], bucketing: Bucketing, seed: int, epoch: int
) -> list[tuple[int, np.ndarray]]:
  """Epoch `epoch`'s batches as (length, pair indices): shuffled within buckets, then the
  batch order shuffled, with the generator of (seed, epoch)."""
  rng = epoch_rng(seed, epoch)
  plan = []
  for length, members in buckets.items():
    rows = bucketing.rows(length)
    perm = rng.permutation(members)
    plan += [(length, perm[i : i + rows]) for i in range(0, len(perm), rows)]
  order = rng.permutation(len(plan))
  return [plan[i] for i in order]


class BucketedSource(EpochSource):
  """Step-indexed token-budget training batches (an `experiments.core.task.TrainSource`)."""

  def __init__(
      self,
      sources: Sequence[Sequence[int]],
      targets: Sequence[Sequence[int]],
      bucketing: Bucketing,
      *,
      seed: int,
  ):
    if not sources:
      raise ValueError('no training pairs')
    self.sources, self.targets, self.bucketing = sources, targets, bucketing
    self.buckets = length_buckets(pair_lengths(sources, targets), bucketing)

    def plan_epoch(epoch: int) -> list[tuple[int, np.ndarray]]:
      return bucket_plan(self.buckets, bucketing, seed, epoch)

    def fetch(item: tuple[int, np.ndarray], step: int) -> Batch:
      del step
      length, idx = item
      return make_batch(
          [sources[i] for i in idx], [targets[i] for i in idx], length, bucketing.rows(length)
      )

    super().__init__(
        plan_epoch,
        fetch,
        seed=seed,
        fingerprint={'num_pairs': len(sources), **dataclasses.asdict(bucketing)},
    )

  @property
  def batch_shapes(self) -> list[tuple[int, int]]:
    """(rows, length) of every bucket: one compilation each."""
    return [(self.bucketing.rows(L), L) for L in self.buckets]

  def padding_stats(self) -> dict[str, float]:
    """Padding fraction (padded positions that hold no token) of one epoch, per side."""
    src_real = sum(len(s) for s in self.sources)
    tgt_real = sum(len(t) for t in self.targets)
    total = 0
    for length, members in self.buckets.items():
      rows = self.bucketing.rows(length)
      total += math.ceil(len(members) / rows) * rows * length
    return {
        'source_padding': 1 - src_real / total,
        'target_padding': 1 - tgt_real / total,
        'batches_per_epoch': float(
            sum(math.ceil(len(m) / self.bucketing.rows(L)) for L, m in self.buckets.items())
        ),
        'num_shapes': float(len(self.buckets)),
    }


def eval_batches(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]] | None,
    rows: int,
    length_multiple: int,
) -> Iterator[tuple[np.ndarray, Batch]]:
  """All pairs sorted by length, in [rows, L] batches (L a multiple of `length_multiple`).

  Yields (indices into the inputs, batch); the last batch is padded with weight-0 rows,
  so shapes come from a small set. Order is fixed (stable sort by length).
  """
  lengths = (
      [max(len(s), len(t)) for s, t in zip(sources, targets)]
      if targets is not None
      else [len(s) for s in sources]
  )
  order = np.argsort(np.asarray(lengths), kind='stable')
  for start in range(0, len(order), rows):
    idx = order[start : start + rows]
    longest = max(lengths[i] for i in idx)
    length = max(length_multiple, -(-longest // length_multiple) * length_multiple)
    yield idx, make_batch(
        [sources[i] for i in idx],
        None if targets is None else [targets[i] for i in idx],
        length,
        rows,
    )
