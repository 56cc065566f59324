"""Monolingual text for the language-model task: sentences per split, and their batches.

Corpora (config.data.corpus):
  multi30k  the Multi30k Task 1 files of `<data root>/multi30k` (data root = config.data.data_dir,
            else $TRANSFORMER_DATA_DIR), read directly (gzip, SHA-256 checked against the official
            files); the sentences of every language of config.data.languages (e.g. 'en,de,fr'),
            language by language. Splits: train, validation, test_2016, test_2017, test_2018.
  files     plain UTF-8 text files, one example per non-empty line: config.data.train_files,
            validation_files, test_files (comma-separated paths or glob patterns).
            Splits: train, validation, test.

An example is one line: the model reads `[bos] + ids` and predicts `ids + [eos]`. Batches are
dicts of NumPy arrays:
  inputs   [rows, L] int32   bos + token ids (pad 0)
  targets  [rows, L] int32   token ids + eos (pad 0; the labels)
  weight   [rows] float32    1 real example, 0 padding row
  bytes    [rows] float32    UTF-8 bytes of the example's text + 1 for its end of line
                             (evaluation batches only; for per-byte perplexity)
Training batches come from the translation task's token-budget buckets (`BucketedSource`, a
step-indexed `TrainSource`: exact resume), so any other `TrainSource` can replace it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator, Sequence
from typing import Any

import ml_collections
import numpy as np

from experiments.text import batching
from experiments.core.data import data_root

Batch = dict[str, np.ndarray]
LANGUAGES = ('en', 'de', 'fr')
VARIANTS = ('raw', 'tok')


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
  validation_split: str
  test_splits: tuple[str, ...]


CORPORA = {
    'multi30k': CorpusSpec('validation', ('test_2016', 'test_2017', 'test_2018')),
    'files': CorpusSpec('validation', ('test',)),
}
FILE_FIELDS = {'train': 'train_files', 'validation': 'validation_files', 'test': 'test_files'}


def languages(data_config: ml_collections.ConfigDict) -> list[str]:
  """config.data.languages ('en,de,fr') as a list."""
  return [lang.strip() for lang in data_config.languages.split(',') if lang.strip()]


def _multi30k_lines(data_config: ml_collections.ConfigDict, split: str) -> list[str]:
  from experiments.text import multi30k  # pylint: disable=g-import-not-at-top

  root = data_root(data_config)
  if not root:
    raise FileNotFoundError(
        'Multi30k: no data folder; set $TRANSFORMER_DATA_DIR (holding multi30k/) or '
        '--config.data.data_dir.'
    )
  lines = []
  for lang in languages(data_config):
    rel = multi30k.relative_path(split, lang, data_config.variant)
    path = os.path.join(root, 'multi30k', rel)
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f'Multi30k: missing file {path}.\n{multi30k.MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    if data_config.verify_checksums and multi30k.file_sha256(path) != multi30k.KNOWN_SHA256[rel]:
      raise ValueError(
          f'Multi30k: {path} is not the official file (SHA-256 differs); replace it, or set '
          '--config.data.verify_checksums=False if it is deliberately different.'
      )
    file_lines = multi30k.read_lines(path)
    if split == 'train' and data_config.max_train_examples:
      file_lines = file_lines[: data_config.max_train_examples]
    lines += file_lines
  return lines


def _file_lines(data_config: ml_collections.ConfigDict, split: str) -> list[str]:
  field = FILE_FIELDS[split]
  patterns = [p.strip() for p in data_config[field].split(',') if p.strip()]
  paths = []
  for pattern in patterns:
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matches:
      raise FileNotFoundError(f'config.data.{field}: no file matches {pattern!r}')
    paths += matches
  lines = []
  for path in paths:
    with open(path, encoding='utf-8', errors='strict') as f:
      lines += [line.rstrip('\n').rstrip('\r') for line in f]
  lines = [line for line in lines if line.strip()]
  if split == 'train' and data_config.max_train_examples:
    lines = lines[: data_config.max_train_examples]
  return lines


def load_lines(data_config: ml_collections.ConfigDict, split: str) -> list[str]:
  """The examples (lines) of `split`, in file order."""
  if data_config.corpus == 'multi30k':
    return _multi30k_lines(data_config, split)
  return _file_lines(data_config, split)


def byte_counts(lines: Sequence[str]) -> np.ndarray:
  """UTF-8 bytes of each line plus one for its end of line (what eos stands for). [n] float32."""
  return np.array([len(line.encode('utf-8')) + 1 for line in lines], np.float32)


def to_lm_batch(batch: Batch) -> Batch:
  """A translation-layout batch of the same sequences as target -> the LM layout."""
  return {'inputs': batch['target_in'], 'targets': batch['target_out'], 'weight': batch['weight']}


class SentenceSource:
  """Step-indexed training batches of single sentences (an experiments.core.task.TrainSource): the
  translation task's token-budget buckets with each sentence as its own target."""

  def __init__(self, ids: Sequence[Sequence[int]], bucketing: batching.Bucketing, *, seed: int):
    self.buckets = batching.BucketedSource(ids, ids, bucketing, seed=seed)

  def batch(self, step: int) -> Batch:
    return to_lm_batch(self.buckets.batch(step))

  def state(self, step: int) -> dict[str, Any]:
    return self.buckets.state(step)

  def check_state(self, state: dict[str, Any]) -> None:
    self.buckets.check_state(state)

  def padding_stats(self) -> dict[str, float]:
    return self.buckets.padding_stats()


def eval_batches(
    ids: Sequence[Sequence[int]], nbytes: np.ndarray, rows: int, length_multiple: int
) -> Iterator[Batch]:
  """All sequences sorted by length in [rows, L] batches (fixed order), with their byte counts."""
  for idx, batch in batching.eval_batches(ids, ids, rows, length_multiple):
    out = to_lm_batch(batch)
    out['bytes'] = np.zeros((rows,), np.float32)
    out['bytes'][: len(idx)] = nbytes[idx]
    yield out
