"""Config checks shared by the text tasks (translation, lm): the SentencePiece vocabulary and
token-budget batching fields of `config.data` (tokenizer.py, batching.py), and a data field
naming one of a registry's entries (corpus, dataset)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import ml_collections

from experiments.core.configuration import require

SPM_MODEL_TYPES = ('unigram', 'bpe', 'char', 'word')

T = TypeVar('T')


def require_known(data: ml_collections.ConfigDict, field: str, choices: Mapping[str, T]) -> T:
  """choices[data.<field>]; a ConfigError naming data.<field> unless the value is one of them:
  'unknown <field> <value>; choose one of <sorted choices>'."""
  value = data[field]
  require(
      value in choices,
      f'data.{field}',
      f'unknown {field} {value!r}; choose one of {sorted(choices)}',
  )
  return choices[value]


def check_vocabulary_and_batching(config: ml_collections.ConfigDict) -> None:
  """data.vocab_size, spm_model_type, character_coverage, length_multiple, row_multiple,
  tokens_per_batch, max_train_examples, max_train_len (<= model.max_len) and batch_size."""
  d = config.data
  require(d.vocab_size >= 16, 'data.vocab_size', f'must be >= 16, got {d.vocab_size}')
  require(
      d.spm_model_type in SPM_MODEL_TYPES,
      'data.spm_model_type',
      f'unknown SentencePiece model type {d.spm_model_type!r}; choose from {SPM_MODEL_TYPES}',
  )
  require(
      0 < d.character_coverage <= 1,
      'data.character_coverage',
      f'must be in (0, 1], got {d.character_coverage}',
  )
  for field in ('length_multiple', 'row_multiple', 'tokens_per_batch'):
    require(d[field] >= 1, f'data.{field}', f'must be >= 1, got {d[field]}')
  require(
      d.max_train_examples >= 0,
      'data.max_train_examples',
      f'must be >= 0 (0 = all), got {d.max_train_examples}',
  )
  require(
      config.batch_size >= d.row_multiple,
      'batch_size',
      f'caps the sentences per batch and must be >= data.row_multiple={d.row_multiple}, '
      f'got {config.batch_size}',
  )
  max_len = config.model.max_len
  require(
      2 <= d.max_train_len <= max_len,
      'data.max_train_len',
      f'must be in [2, model.max_len={max_len}], got {d.max_train_len}',
  )
  require(
      d.tokens_per_batch >= d.max_train_len,
      'data.tokens_per_batch',
      f'{d.tokens_per_batch} cannot hold one sequence of data.max_train_len={d.max_train_len}',
  )
