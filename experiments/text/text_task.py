"""What the text tasks (translation, lm) share of the `Task` interface.

A text task reads sentences, tokenizes them with a SentencePiece vocabulary trained once into
WORKDIR/assets/ (tokenizer.py; reused on resume, never retrained once checkpoints exist), builds
its model config with the vocabulary sizes of that tokenizer, and trains a model whose output is
next-token logits [b, t, V] with the label-smoothed token loss of losses.py.

A subclass sets `asset_prefix` (and `target_key` when its batches name the next tokens
otherwise) and implements `validate_data`, `validate_task`, `model_config_for`,
`tokenizer_settings`, `tokenizer_texts` and `usage_hint`, besides the abstract parts of `Task`.
"""

from __future__ import annotations

import abc
import os
import tempfile
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections

from experiments.core.task import Batch, Metrics, Task
from experiments.text import losses
from experiments.text import text_checks
from experiments.text import tokenizer as tok_lib


class SplitNames(Protocol):
  """A corpus' or dataset's description, as far as the task's splits go."""

  validation_split: str
  test_splits: tuple[str, ...]


def has_checkpoints(workdir: str) -> bool:
  """Whether WORKDIR/checkpoints/ holds a saved step (a directory named by its number)."""
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(ckpt_dir) and any(name.isdigit() for name in os.listdir(ckpt_dir))


class TextTask(Task):
  """A task on tokenized text; see the module docstring for what a subclass provides."""

  # Prefix of the temporary asset directory of setup(None) (tests).
  asset_prefix = 'text-assets-'
  # Batch key of the next-token ids [b, t] the logits are scored against.
  target_key = 'targets'

  def __init__(self, config: ml_collections.ConfigDict, splits: SplitNames):
    super().__init__(config)
    self.validation_split = splits.validation_split
    self.test_splits = splits.test_splits
    self.workdir: str | None = None
    self.tokenizer: tok_lib.Tokenizer | None = None
    self._model_config: Any = None

  # ---- config ----------------------------------------------------------------------------

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    """In this order: the data source (validate_data), the vocabulary and token-budget batching
    fields, the task's other sections (validate_task), and the model section, built with
    data.vocab_size for every vocabulary (a bad value is a ConfigError naming model.<field>)."""
    cls.validate_data(config.data)
    text_checks.check_vocabulary_and_batching(config)
    cls.validate_task(config)
    vocab_size = config.data.vocab_size
    cls.model_config_for(config, vocab_size, vocab_size)

  @classmethod
  @abc.abstractmethod
  def validate_data(cls, data: ml_collections.ConfigDict) -> None:
    """ConfigError for a bad data source (corpus or dataset, languages, variant, files)."""

  @classmethod
  def validate_task(cls, config: ml_collections.ConfigDict) -> None:
    """ConfigError for a bad value in the task's own sections (e.g. decoding, generation)."""

  @classmethod
  @abc.abstractmethod
  def model_config_for(
      cls, config: ml_collections.ConfigDict, source_vocab: int, target_vocab: int
  ) -> Any:
    """The model config of config.model with these vocabulary sizes (a ConfigError names
    model.<field> for a bad value)."""

  # ---- vocabulary ------------------------------------------------------------------------

  @abc.abstractmethod
  def tokenizer_settings(self) -> dict[str, Any]:
    """JSON-able description of the vocabulary, stored with it and compared on reuse."""

  @abc.abstractmethod
  def tokenizer_texts(self) -> tuple[list[str], list[str]]:
    """(source texts, target texts) to train the vocabulary on."""

  def setup(self, workdir: str | None) -> None:
    """Loads (or, on a fresh workdir, trains) the SentencePiece vocabulary. Data load lazily."""
    if self.tokenizer is not None:
      return
    self.workdir = workdir
    if workdir is None:
      asset_dir, trained = tempfile.mkdtemp(prefix=self.asset_prefix), False
    else:
      asset_dir, trained = os.path.join(workdir, 'assets'), has_checkpoints(workdir)
    self.tokenizer = tok_lib.load_or_train(
        asset_dir, self.tokenizer_settings(), self.tokenizer_texts, allow_training=not trained
    )
    self._model_config = self.model_config_for(
        self.config, self.tokenizer.source_vocab_size, self.tokenizer.target_vocab_size
    )

  @property
  def model_config(self) -> Any:
    if self._model_config is None:
      raise RuntimeError('call setup() first: the vocabulary sizes come from the tokenizer')
    return self._model_config

  # ---- training and evaluation -----------------------------------------------------------

  def loss_and_metrics(
      self, model: nn.Module, params: Any, batch: Batch, *, rng: jax.Array | None, train: bool
  ) -> tuple[jax.Array, Metrics]:
    """losses.translation_loss of the logits against batch[target_key], plus batch_metrics."""
    logits = model.apply(
        {'params': params},
        *self.model_inputs(batch),
        train=train,
        rngs={'dropout': rng} if train else None,
    )  # [b, t, V]
    loss, metrics = losses.translation_loss(
        logits, batch[self.target_key], batch['weight'], self.config.label_smoothing
    )
    return loss, {**metrics, **self.batch_metrics(batch, metrics)}

  def batch_metrics(self, batch: Batch, metrics: Metrics) -> Metrics:
    """Further (sum, count) metrics of a batch, given the token metrics; default none."""
    del batch, metrics
    return {}

  @abc.abstractmethod
  def usage_hint(self, workdir: str) -> str:
    """A command that uses the trained model in `workdir` (generate, translate)."""

  def hints(self, workdir: str) -> list[str]:
    return [
        f'python run.py eval --workdir {workdir} --checkpoint best --split {self.test_splits[0]}',
        self.usage_hint(workdir),
    ]
