"""Translation training batches through Grain, without the corpus in Python lists.

The pipeline reads sentence pairs by random access from a record source
(`experiments/translation/data.py`: an in-memory `TextPairs` for Multi30k, a `TfdsPairs` over
`tfds.data_source(...)` of an ArrayRecord-prepared dataset for WMT14) and builds exactly the
batches of `batching.BucketedSource` for the same (seed, step):

  1. lengths: one pass tokenizes every pair once and keeps only its two lengths (int32 [n, 2],
     cached in WORKDIR/assets/), also through Grain workers;
  2. plan: pairs longer than data.max_train_len are dropped; the rest go to length buckets and
     epoch e is `batching.bucket_plan(buckets, bucketing, seed, e)`, the same function the
     in-memory source uses, so step s gets the same (length, pair indices) as before;
  3. fetch (in the Grain workers): read this process's rows of the step's pairs, tokenize them,
     pad them with `batching.make_batch`.

So a checkpoint of the in-memory pipeline resumes here exactly (same fingerprint) and vice versa.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from experiments.core import grain_source
from experiments.text import batching

Pair = tuple[str, str]


def _chunk_lengths(records: Sequence[Pair], tokenizer, chunk: int, index: int) -> np.ndarray:
  """[m, 2] token counts (incl. eos) of source and target of records [index*chunk, ...)."""
  stop = min(len(records), (index + 1) * chunk)
  pairs = [records[i] for i in range(index * chunk, stop)]
  src = tokenizer.encode_source([p[0] for p in pairs])
  tgt = tokenizer.encode_target([p[1] for p in pairs])
  return np.array([[len(s), len(t)] for s, t in zip(src, tgt)], np.int32).reshape(-1, 2)


def pair_lengths(
    records: Sequence[Pair], tokenizer, *, num_workers: int = 0, chunk: int = 4096
) -> np.ndarray:
  """int32 [len(records), 2]: source and target token counts (incl. eos) of every pair."""
  import grain  # pylint: disable=g-import-not-at-top

  grain_source.ensure_flags_parsed()
  chunks = math.ceil(len(records) / chunk)
  ds = grain.MapDataset.range(chunks).map(
      functools.partial(_chunk_lengths, records, tokenizer, chunk)
  )
  it = ds.to_iter_dataset()
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  parts = list(it)
  return np.concatenate(parts) if parts else np.zeros((0, 2), np.int32)


def cached_pair_lengths(
    records: Sequence[Pair], tokenizer, cache_dir: str | None, key: str, num_workers: int = 0
) -> np.ndarray:
  """`pair_lengths`, stored as cache_dir/train_lengths-<hash of key and size>.npy."""
  if cache_dir is None:
    return pair_lengths(records, tokenizer, num_workers=num_workers)
  digest = hashlib.sha256(f'{key}|{len(records)}'.encode()).hexdigest()[:16]
  path = os.path.join(cache_dir, f'train_lengths-{digest}.npy')
  if os.path.exists(path):
    lengths = np.load(path)
    if lengths.shape == (len(records), 2):
      return lengths
  lengths = pair_lengths(records, tokenizer, num_workers=num_workers)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f'{path[:-len(".npy")]}.{os.getpid()}.tmp.npy'
  np.save(tmp, lengths)
  os.replace(tmp, path)
  return lengths


@dataclasses.dataclass
class PairFetcher:
  """(length, kept-pair indices) of a step -> this process's rows, tokenized and padded."""

  records: Sequence[Pair]
  tokenizer: Any
  keep: np.ndarray  # kept-pair index -> record index
  bucketing: batching.Bucketing

  def __call__(self, item: tuple[int, np.ndarray], step: int, shard: tuple[int, int]):
    del step
    length, idx = item
    rows = self.bucketing.rows(length)
    mine, block = grain_source.local_indices(idx, rows, shard)
    pairs = [self.records[int(self.keep[i])] for i in mine]
    batch = batching.make_batch(
        self.tokenizer.encode_source([p[0] for p in pairs]),
        self.tokenizer.encode_target([p[1] for p in pairs]),
        length,
        block.stop - block.start,
    )
    if shard[1] == 1:
      return batch
    return grain_source.ProcessLocalBatch(batch, global_rows=rows, row_start=block.start)


class TranslationGrainSource(grain_source.GrainEpochSource):
  """Token-budget translation batches of `records` (a `TrainSource`; see the module doc)."""

  def __init__(
      self,
      records: Sequence[Pair],
      tokenizer,
      bucketing: batching.Bucketing,
      *,
      seed: int,
      max_train_len: int,
      lengths: np.ndarray | None = None,
      num_workers: int = 0,
      shard: tuple[int, int] | None = None,
  ):
    if lengths is None:
      lengths = pair_lengths(records, tokenizer, num_workers=num_workers)
    if len(lengths) != len(records):
      raise ValueError(f'{len(lengths)} lengths for {len(records)} records')
    longest = lengths.max(axis=1) if len(lengths) else np.zeros((0,), np.int32)
    self.keep = np.flatnonzero(longest <= max_train_len)
    if not len(self.keep):
      raise ValueError(f'no training pair is at most data.max_train_len={max_train_len} tokens')
    if len(self.keep) < len(records):
      logging.info(
          'Dropped %d of %d training pairs longer than %d tokens.',
          len(records) - len(self.keep),
          len(records),
          max_train_len,
      )
    self.lengths = lengths[self.keep]
    self.bucketing = bucketing
    self.buckets = batching.length_buckets(longest[self.keep], bucketing)
    super().__init__(
        functools.partial(batching.bucket_plan, self.buckets, bucketing, seed),
        PairFetcher(records, tokenizer, self.keep, bucketing),
        seed=seed,
        # The fingerprint of batching.BucketedSource: checkpoints resume across the two.
        fingerprint={'num_pairs': len(self.keep), **dataclasses.asdict(bucketing)},
        num_workers=num_workers,
        shard=shard,
    )

  @property
  def batch_shapes(self) -> list[tuple[int, int]]:
    """(rows, length) of every bucket: one compilation each."""
    return [(self.bucketing.rows(L), L) for L in self.buckets]

  def padding_stats(self) -> dict[str, float]:
    """Padding fraction of one epoch per side, batches per epoch, number of shapes."""
    total, batches = 0, 0
    for length, members in self.buckets.items():
      rows = self.bucketing.rows(length)
      batches += math.ceil(len(members) / rows)
      total += math.ceil(len(members) / rows) * rows * length
    src, tgt = self.lengths.sum(axis=0) if len(self.lengths) else (0, 0)
    return {
        'source_padding': 1 - src / total,
        'target_padding': 1 - tgt / total,
        'batches_per_epoch': float(batches),
        'num_shapes': float(len(self.buckets)),
    }
