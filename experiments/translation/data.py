"""Parallel text per split, loaded into memory from TFDS (Multi30k or WMT14).

  multi30k  the project's TFDS builder (experiments/translation/multi30k.py), prepared
            once from `<data root>/multi30k` (data root = config.data.data_dir, else
            $TRANSFORMER_DATA_DIR); splits train, validation, test_2016/2017/2018.
  wmt14     TFDS `wmt14_translate/de-en` (downloads where there is network); splits
            train, validation (newstest2013 + newsdev2014... as TFDS defines them), test
            (newstest2014). TFDS's supervised keys are (de, en); the translation
            direction comes from config.data.source_lang / target_lang.
Sentences come back in the order of the original files (Multi30k) or of TFDS (WMT).
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np
from absl import logging

from experiments import tf_env

DATA_DIR_ENV = 'TRANSFORMER_DATA_DIR'


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


def data_root(data_config: ml_collections.ConfigDict) -> str | None:
  """config.data.data_dir, else $TRANSFORMER_DATA_DIR, else None."""
  return data_config.data_dir or os.environ.get(DATA_DIR_ENV) or None


def _decode(value: bytes) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _read_tfds(dataset, source: str, target: str, limit: int = 0) -> Split:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if limit:
    dataset = dataset.take(limit)
  rows = [
      (int(ex.get('line', i)), _decode(ex[source]), _decode(ex[target]))
      for i, ex in enumerate(tfds.as_numpy(dataset))
  ]
  rows.sort(key=lambda r: r[0])
  return Split([r[1] for r in rows], [r[2] for r in rows])


def load_splits(
    data_config: ml_collections.ConfigDict, splits: tuple[str, ...], variant: str | None = None
) -> dict[str, Split]:
  """{split: Split} for `splits` of config.data.dataset in the configured direction.

  `variant` overrides config.data.variant (e.g. 'raw' references for a 'tok' model)."""
  tf_env.import_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  d = data_config
  src, tgt = d.source_lang, d.target_lang
  variant = variant or d.variant
  tfds_dir = d.tfds_data_dir or None
  out = {}
  if d.dataset == 'multi30k':
    from experiments.translation import multi30k  # pylint: disable=g-import-not-at-top

    root = data_root(d)
    builder = multi30k.prepare_multi30k(
        src,
        tgt,
        variant,
        source_dir=os.path.join(root, 'multi30k') if root else None,
        data_dir=tfds_dir,
        verify_checksums=d.verify_checksums,
    )
    for split in splits:
      out[split] = _read_tfds(
          builder.as_dataset(split=split, shuffle_files=False),
          src,
          tgt,
          d.max_train_examples if split == 'train' else 0,
      )
  elif d.dataset == 'wmt14':
    for split in splits:
      ds = tfds.load('wmt14_translate/de-en', split=split, data_dir=tfds_dir, shuffle_files=False)
      out[split] = _read_tfds(ds, src, tgt, d.max_train_examples if split == 'train' else 0)
  else:
    raise ValueError(
        f'config.data.dataset: unknown dataset {d.dataset!r}; ' f'choose one of {sorted(DATASETS)}'
    )
  for split, pairs in out.items():
    logging.info(
        '%s %s->%s (%s) %s: %d sentence pairs', d.dataset, src, tgt, variant, split, len(pairs)
    )
  return out


def length_summary(lengths: list[int]) -> str:
  a = np.asarray(lengths)
  return f'mean {a.mean():.1f}, 99% {np.percentile(a, 99):.0f}, max {a.max()}'
