"""experiments/translation/grain_pipeline.py: Grain batches == the in-memory BucketedSource's for
the same (seed, step), across epochs, with 0 and 2 worker processes; resume mid-epoch; process
shards are disjoint blocks whose union is the global batch; WMT14 (TFDS mock data) and the
real Multi30k go through the same pipeline."""

from __future__ import annotations

import os

import numpy as np
import pytest

from experiments.core import grain_source
from experiments.core.data import DATA_DIR_ENV
from experiments.text import batching
from experiments.translation import data as data_lib
from experiments.translation import grain_pipeline
from experiments.text import tokenizer as tok_lib
from experiments.text.synthetic_corpus import english_sentences, translate_words

BUCKETING = batching.Bucketing(tokens_per_batch=256, max_rows=32, length_multiple=4, row_multiple=4)
MAX_TRAIN_LEN = 40


def train_tokenizer(sources, targets, path: str, vocab_size: int = 64) -> tok_lib.Tokenizer:
  tok_lib.train_sentencepiece(list(sources) + list(targets), path, vocab_size=vocab_size)
  return tok_lib.Tokenizer.load(path)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """400 pairs of 1-4 generated sentences (lengths spread over several buckets)."""
  rng = np.random.default_rng(0)
  en = english_sentences()
  sources = [' '.join(rng.choice(en, size=rng.integers(1, 5))) for _ in range(400)]
  targets = [translate_words(s, 'de') for s in sources]
  model = str(tmp_path_factory.mktemp('spm') / 'spm.model')
  return data_lib.Split(sources, targets), train_tokenizer(sources, targets, model)


def in_memory_source(split, tokenizer, max_train_len=MAX_TRAIN_LEN, bucketing=BUCKETING, seed=3):
  """Today's pipeline, as TranslationTask built it before Grain: token lists in memory."""
  src, tgt = tokenizer.encode_source(split.sources), tokenizer.encode_target(split.targets)
  keep = [i for i, (s, t) in enumerate(zip(src, tgt)) if max(len(s), len(t)) <= max_train_len]
  return batching.BucketedSource(
      [src[i] for i in keep], [tgt[i] for i in keep], bucketing, seed=seed
  )


def grain_source_of(records, tokenizer, shard=(0, 1), workers=0, seed=3, bucketing=BUCKETING):
  return grain_pipeline.TranslationGrainSource(
      records,
      tokenizer,
      bucketing,
      seed=seed,
      max_train_len=MAX_TRAIN_LEN,
      num_workers=workers,
      shard=shard,
  )


def assert_same_batch(a, b):
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize('workers', [0, 2])
def test_same_batches_as_the_in_memory_pipeline(corpus, workers):
  split, tokenizer = corpus
  ref = in_memory_source(split, tokenizer)
  src = grain_source_of(data_lib.TextPairs(split), tokenizer, workers=workers)
  steps = int(ref.padding_stats()['batches_per_epoch'] * 1.5) + 1  # into the second epoch
  assert src.fingerprint == ref.fingerprint and src.batch_shapes == ref.batch_shapes
  assert src.padding_stats() == pytest.approx(ref.padding_stats())
  try:
    for step in range(steps):
      assert_same_batch(src.batch(step), ref.batch(step))
    assert src.locate(steps - 1)[0] == 1  # the comparison reached epoch 1
  finally:
    src.close()


def test_resume_mid_epoch(corpus):
  split, tokenizer = corpus
  ref = in_memory_source(split, tokenizer)
  records = data_lib.TextPairs(split)
  first = grain_source_of(records, tokenizer)
  for step in range(5):
    first.batch(step)
  state = first.state(5)
  resumed = grain_source_of(records, tokenizer)  # a new process: nothing but the checkpoint
  resumed.check_state(state)
  for step in (5, 6, 7):
    assert_same_batch(resumed.batch(step), ref.batch(step))
  assert_same_batch(resumed.batch(2), ref.batch(2))  # any step, in any order


class ReadLog(data_lib.TextPairs):
  """TextPairs that remember which records were read (in-process pipelines only)."""

  def __init__(self, split):
    super().__init__(split)
    self.read: list[int] = []

  def __getitem__(self, i):
    self.read.append(int(i))
    return super().__getitem__(i)


def test_two_process_shards_are_disjoint_blocks_of_the_global_batch(corpus):
  split, tokenizer = corpus
  logs = [ReadLog(split) for _ in range(3)]
  whole = grain_source_of(logs[0], tokenizer)
  parts = [grain_source_of(logs[i + 1], tokenizer, shard=(i, 2)) for i in range(2)]
  records = data_lib.TextPairs(split)
  pipes = [grain_source_of(records, tokenizer, shard=(i, 2)) for i in range(2)]
  for step in range(12):
    for log in logs:
      log.read.clear()
    full = whole.fetch_step(step)  # what the pipeline maps (no read-ahead in the logs)
    rows = len(full['weight'])
    blocks = [p.fetch_step(step) for p in parts]
    read = [set(log.read) for log in logs]
    assert not read[1] & read[2] and read[1] | read[2] == read[0]  # each reads only its rows
    for i, block in enumerate(blocks):
      assert isinstance(block, grain_source.ProcessLocalBatch)
      assert (block.global_rows, block.row_start) == (rows, i * rows // 2)
    for key in full:  # the union, in order, is the global batch
      np.testing.assert_array_equal(np.concatenate([b[key] for b in blocks]), full[key])
    assert sum(int(b['weight'].sum()) for b in blocks) == int(full['weight'].sum())
    for pipe, block in zip(pipes, blocks):  # and the pipelines yield the same
      assert_same_batch(pipe.batch(step), block)


def test_lengths_are_cached(corpus, tmp_path):
  split, tokenizer = corpus
  records = data_lib.TextPairs(split)
  a = grain_pipeline.cached_pair_lengths(records, tokenizer, str(tmp_path), 'key')
  (cached,) = os.listdir(tmp_path)
  np.testing.assert_array_equal(np.load(tmp_path / cached), a)
  src, tgt = tokenizer.encode_source(split.sources), tokenizer.encode_target(split.targets)
  np.testing.assert_array_equal(a, [[len(s), len(t)] for s, t in zip(src, tgt)])
  b = grain_pipeline.cached_pair_lengths(records, tokenizer, str(tmp_path), 'key')
  np.testing.assert_array_equal(a, b)


def test_wmt14_mock_data_through_grain(load_config, tmp_path):
  """configs/translation_wmt14.py's data fields: TFDS mock records read by random access
  (tfds.data_source, the ArrayRecord path) and batched by the same Grain pipeline."""
  tfds = pytest.importorskip('tensorflow_datasets')
  config = load_config('translation_wmt14')
  with tfds.testing.mock_data(num_examples=64):
    records = data_lib.train_records(config.data, load_train=None)
    assert isinstance(records, data_lib.TfdsPairs) and len(records) == 64
    pairs = [records[i] for i in range(len(records))]
    raw = tfds.data_source('wmt14_translate/de-en', split='train')
    text = lambda v: v.decode() if isinstance(v, bytes) else v  # pylint: disable=unnecessary-lambda-assignment
    assert pairs[5] == (text(raw[5]['en']), text(raw[5]['de']))  # en -> de as configured
    split = data_lib.Split([p[0] for p in pairs], [p[1] for p in pairs])
    tokenizer = train_tokenizer(split.sources, split.targets, str(tmp_path / 'spm.model'))
    bucketing = batching.Bucketing(
        tokens_per_batch=512, max_rows=16, length_multiple=16, row_multiple=16
    )
    src = grain_source_of(records, tokenizer, bucketing=bucketing)
    ref = in_memory_source(split, tokenizer, bucketing=bucketing)
    for step in range(3):
      assert_same_batch(src.batch(step), ref.batch(step))


def test_real_multi30k_same_batches(load_config, tmp_path):
  if not os.environ.get(DATA_DIR_ENV):
    pytest.skip('needs $TRANSFORMER_DATA_DIR with multi30k/')
  config = load_config('translation_multi30k')
  config.data.tfds_data_dir = str(tmp_path / 'tfds')
  split = data_lib.load_splits(config.data, ('train',))['train']
  tokenizer = train_tokenizer(
      split.sources[:5000], split.targets[:5000], str(tmp_path / 'spm.model'), vocab_size=1000
  )
  bucketing = batching.Bucketing(
      tokens_per_batch=4096, max_rows=512, length_multiple=4, row_multiple=8
  )
  records = data_lib.train_records(config.data, lambda: split)
  src = grain_source_of(records, tokenizer, bucketing=bucketing, workers=2)
  ref = in_memory_source(split, tokenizer, max_train_len=MAX_TRAIN_LEN, bucketing=bucketing)
  try:
    for step in (0, 1, 2, 77):
      assert_same_batch(src.batch(step), ref.batch(step))
  finally:
    src.close()
