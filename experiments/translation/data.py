"""Parallel text per split, loaded into memory from TFDS (Multi30k or WMT14).

  multi30k  the project's TFDS builder (experiments/text/multi30k.py), prepared
            once as ArrayRecord files from `<data root>/multi30k` (data root =
            config.data.data_dir, else $TRANSFORMER_DATA_DIR; no TensorFlow needed) and read by
            random access; splits train, validation, test_2016/2017/2018.
  wmt14     TFDS `wmt14_translate/de-en` prepared in the ArrayRecord format (TFDS downloads
            and prepares it where there is network) and read by random access through
            `tfds.data_source`; splits train, validation (newstest2013), test (newstest2014).
            TFDS's supervised keys are (de, en); the translation direction comes from
            config.data.source_lang / target_lang.
Sentences come back in the order of the original files (Multi30k) or of TFDS (WMT).

Training pairs are read through `train_records` (random access, `len()` + `[i]` -> (source,
target) text): Multi30k's 29k pairs from memory, WMT14's 4.5M from the ArrayRecord files, never
as Python lists; experiments/translation/grain_pipeline.py batches them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from experiments.core import tf_env
from experiments.core.data import data_root


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  languages: tuple[str, ...]
  variants: tuple[str, ...]
  validation_split: str
  test_splits: tuple[str, ...]


DATASETS = {
    'multi30k': DatasetSpec(
        ('en', 'de', 'fr'), ('raw', 'tok'), 'validation', ('test_2016', 'test_2017', 'test_2018')
    ),
    'wmt14': DatasetSpec(('en', 'de'), ('raw',), 'validation', ('test',)),
}


@dataclasses.dataclass
class Split:
  sources: list[str]
  targets: list[str]

  def __len__(self) -> int:
    return len(self.sources)


class TextPairs:
  """Random access to in-memory sentence pairs (small datasets)."""

  def __init__(self, split: Split):
    self.split = split

  def __len__(self) -> int:
    return len(self.split)

  def __getitem__(self, i: int) -> tuple[str, str]:
    return self.split.sources[i], self.split.targets[i]


class TfdsPairs:
  """Random access to (source, target) text of a `tfds.data_source` of translation records."""

  def __init__(self, source, source_lang: str, target_lang: str, limit: int = 0):
    self.source, self.source_lang, self.target_lang = source, source_lang, target_lang
    self.size = min(limit, len(source)) if limit else len(source)

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, i: int) -> tuple[str, str]:
    if not 0 <= i < self.size:
      raise IndexError(f'record {i} of {self.size}')
    ex = self.source[int(i)]
    return _decode(ex[self.source_lang]), _decode(ex[self.target_lang])


WMT14 = 'wmt14_translate/de-en'


def wmt14_source(data_config: ml_collections.ConfigDict, split: str):
  """`tfds.data_source` of a WMT14 split (prepared as ArrayRecord on first use, where TFDS may
  need TensorFlow and the network; read without either)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  with preparation_lock(data_config.tfds_data_dir or None):
    builder = tfds.builder(
        WMT14, data_dir=data_config.tfds_data_dir or None, file_format='array_record'
    )
    if not builder.is_prepared():
      if tf_env.available():
        tf_env.import_tensorflow()  # hides the GPUs from it
      builder.download_and_prepare()
    return builder.as_data_source(split=split)


@contextlib.contextmanager
def preparation_lock(tfds_dir: str | None):
  """Exclusive flock on TFDS_DIR/.prepare.lock while a dataset is prepared or opened: the
  processes of a multi-process run (sharing the directory) prepare it once, not concurrently."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  directory = os.path.expanduser(tfds_dir or tfds.core.constants.DATA_DIR)
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, '.prepare.lock'), 'a+') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def train_records(data_config: ml_collections.ConfigDict, load_train) -> Any:
  """Random-access training pairs: WMT14 from its ArrayRecord files, otherwise
  `TextPairs(load_train())` (the in-memory Split of a small dataset)."""
  d = data_config
  if d.dataset == 'wmt14':
    return TfdsPairs(wmt14_source(d, 'train'), d.source_lang, d.target_lang, d.max_train_examples)
  return TextPairs(load_train())


# Pairs of a large corpus that train the SentencePiece vocabulary (SentencePiece itself samples
# at most 2M sentences, i.e. 1M pairs).
TOKENIZER_PAIRS = 1_000_000


def tokenizer_texts(data_config: ml_collections.ConfigDict, load_train) -> tuple[list, list]:
  """(source texts, target texts) to train the vocabulary on: the in-memory training split of a
  small dataset; for WMT14, TOKENIZER_PAIRS pairs evenly spaced over the ArrayRecord files."""
  if data_config.dataset != 'wmt14':
    train = load_train()
    return train.sources, train.targets
  records = train_records(data_config, load_train)
  picks = np.unique(
      np.linspace(0, len(records) - 1, min(len(records), TOKENIZER_PAIRS)).astype(int)
  )
  pairs = [records[int(i)] for i in picks]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def _decode(value: bytes) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _read_records(records, source: str, target: str, limit: int = 0) -> Split:
  """A Split from a random-access source of prepared records, in the order of their `line`
  (the first `limit` records when `limit` > 0)."""
  n = min(limit, len(records)) if limit else len(records)
  rows = [records[i] for i in range(n)]
  rows = [
      (int(ex.get('line', i)), _decode(ex[source]), _decode(ex[target]))
      for i, ex in enumerate(rows)
  ]
  rows.sort(key=lambda r: r[0])
  return Split([r[1] for r in rows], [r[2] for r in rows])


def multi30k_builder(data_config: ml_collections.ConfigDict, variant: str):
  """The Multi30k builder of the configured direction and `variant`, prepared once (as
  ArrayRecord files, without TensorFlow) under the preparation lock."""
  from experiments.text import multi30k  # pylint: disable=g-import-not-at-top

  d, root = data_config, data_root(data_config)
  with preparation_lock(d.tfds_data_dir or None):
    return multi30k.prepare_multi30k(
        d.source_lang,
        d.target_lang,
        variant,
        source_dir=os.path.join(root, 'multi30k') if root else None,
        data_dir=d.tfds_data_dir or None,
        verify_checksums=d.verify_checksums,
    )


def prepare(data_config: ml_collections.ConfigDict) -> list[str]:
  """Prepares every split of config.data.dataset once (`run.py prepare`): for Multi30k the
  configured variant and the raw text that BLEU's detokenized references come from."""
  d = data_config
  if d.dataset == 'wmt14':
    for split in ('train', *DATASETS['wmt14'].test_splits, DATASETS['wmt14'].validation_split):
      wmt14_source(d, split)
    return [f'wmt14: prepared (ArrayRecord) in {d.tfds_data_dir or "the TFDS default folder"}']
  return [
      f'multi30k {d.source_lang}->{d.target_lang} {v}: prepared (ArrayRecord) in '
      f'{multi30k_builder(d, v).data_dir}'
      for v in sorted({d.variant, 'raw'})
  ]


def load_splits(
    data_config: ml_collections.ConfigDict, splits: tuple[str, ...], variant: str | None = None
) -> dict[str, Split]:
  """{split: Split} for `splits` of config.data.dataset in the configured direction.

  `variant` overrides config.data.variant (e.g. 'raw' references for a 'tok' model)."""
  d = data_config
  src, tgt = d.source_lang, d.target_lang
  variant = variant or d.variant
  out = {}
  if d.dataset == 'multi30k':
    builder = multi30k_builder(d, variant)
    for split in splits:
      out[split] = _read_records(
          builder.as_data_source(split=split),
          src,
          tgt,
          d.max_train_examples if split == 'train' else 0,
      )
  elif d.dataset == 'wmt14':
    for split in splits:
      pairs = TfdsPairs(
          wmt14_source(d, split), src, tgt, d.max_train_examples if split == 'train' else 0
      )
      rows = [pairs[i] for i in range(len(pairs))]
      out[split] = Split([r[0] for r in rows], [r[1] for r in rows])
  else:
    raise ValueError(
        f'config.data.dataset: unknown dataset {d.dataset!r}; ' f'choose one of {sorted(DATASETS)}'
    )
  for split, pairs in out.items():
    logging.info(
        '%s %s->%s (%s) %s: %d sentence pairs', d.dataset, src, tgt, variant, split, len(pairs)
    )
  return out
