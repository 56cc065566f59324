"""Language modelling with the library's decoder-only `LanguageModel` on the shared trainer
(or the recurrent `RNNLanguageModel`: model.architecture='rnn', transformer/rnn_language_model.py).

Config sections read here (see configs/lm_multi30k.py):
  data.corpus             'multi30k' | 'files' (experiments/lm/data.py)
  data.languages          multi30k: comma-separated languages, e.g. 'en,de,fr' or 'en'
  data.variant            multi30k: 'raw' | 'tok' (lowercased, Moses-tokenized files)
  data.data_dir           root holding multi30k/ ('' = $TRANSFORMER_DATA_DIR)
  data.verify_checksums   multi30k: check the files' SHA-256 against the official ones
  data.train_files, data.validation_files, data.test_files   files: comma-separated paths/globs
  data.vocab_size, data.spm_model_type, data.character_coverage
                          SentencePiece, trained once on the training text into WORKDIR/assets/
  data.tokens_per_batch, data.length_multiple, data.row_multiple   token-budget batches
  data.max_train_len      training sentences longer than this (tokens, incl. eos) are dropped
  data.max_train_examples 0 = all (multi30k: per language)
  model.*                 transformer.language_model.LanguageModelConfig fields except
                          vocab_size and pad_id (taken from the tokenizer); built by
                          experiments/core/model_config.py, so model.attention.*, model.scan_layers
                          and model.remat apply
  generation.temperature, generation.top_k, generation.max_new_tokens
                          samples written after training (WORKDIR/samples.txt) and the
                          defaults of `run.py generate`
  label_smoothing         of the training loss; the reported nll/perplexity are unsmoothed

Metrics: nll (nats per token, eos included), perplexity = exp(nll), token_accuracy; and per
byte of UTF-8 text (each line's end counts as one byte, standing for eos): nll_per_byte,
byte_perplexity = exp(nll_per_byte), bits_per_byte = nll_per_byte / ln 2. Per-byte numbers
compare models with different vocabularies (on the same text: Multi30k's `tok` variant counts the
bytes of its lowercased, tokenized lines). Best checkpoint: lowest validation perplexity.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import ml_collections
import numpy as np
from absl import logging

from experiments.core import model_config as model_config_lib
from experiments.core.configuration import require
from experiments.lm import data as data_lib
from experiments.core.task import Batch, EvalContext, Metrics
from experiments.text import batching
from experiments.text import text_checks
from experiments.text import tokenizer as tok_lib
from experiments.text.text_task import TextTask
from transformer.language_model import LanguageModelConfig
from transformer.rnn_language_model import language_model


def build_model_config(config: ml_collections.ConfigDict, vocab_size: int) -> LanguageModelConfig:
  """LanguageModelConfig from config.model plus the vocabulary size and pad id; a bad value is
  a ConfigError naming model.<field>."""
  return model_config_lib.build('lm', config.model, vocab_size=vocab_size, pad_id=tok_lib.PAD_ID)


class LanguageModelTask(TextTask):
  """Next-token prediction on monolingual text; metrics per token and per byte."""

  best_metric = 'perplexity'
  best_mode = 'min'
  asset_prefix = 'lm-assets-'

  @classmethod
  def validate_data(cls, d: ml_collections.ConfigDict) -> None:
    text_checks.require_known(d, 'corpus', data_lib.CORPORA)
    if d.corpus == 'multi30k':
      langs = data_lib.languages(d)
      require(
          bool(langs) and set(langs) <= set(data_lib.LANGUAGES) and len(set(langs)) == len(langs),
          'data.languages',
          f'must be distinct languages of {data_lib.LANGUAGES}, comma-separated, got '
          f'{d.languages!r}',
      )
      require(
          d.variant in data_lib.VARIANTS,
          'data.variant',
          f'multi30k has text variants {data_lib.VARIANTS}, got {d.variant!r}',
      )
    else:
      for field in data_lib.FILE_FIELDS.values():
        require(bool(d[field].strip()), f'data.{field}', 'is empty; give paths or globs')

  @classmethod
  def validate_task(cls, config: ml_collections.ConfigDict) -> None:
    g = config.generation
    require(g.temperature >= 0, 'generation.temperature', f'must be >= 0, got {g.temperature}')
    require(g.top_k >= 0, 'generation.top_k', f'must be >= 0 (0 = off), got {g.top_k}')
    require(
        g.max_new_tokens >= 1,
        'generation.max_new_tokens',
        f'must be >= 1, got {g.max_new_tokens}',
    )

  @classmethod
  def model_config_for(
      cls, config: ml_collections.ConfigDict, source_vocab: int, target_vocab: int
  ) -> LanguageModelConfig:
    del source_vocab  # one vocabulary: the tokenizer is shared
    return build_model_config(config, target_vocab)

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config, data_lib.CORPORA[config.data.corpus])
    self._lines: dict[str, list[str]] = {}
    self._ids: dict[str, list[list[int]]] = {}

  # ---- data ----------------------------------------------------------------------------

  def lines(self, split: str) -> list[str]:
    """The text examples of `split` (loaded on first use)."""
    if split not in ('train', *self.eval_splits):
      raise ValueError(f'unknown split {split!r}; choose one of {["train", *self.eval_splits]}')
    if split not in self._lines:
      self._lines[split] = data_lib.load_lines(self.config.data, split)
      logging.info('%s: %d lines', split, len(self._lines[split]))
      if not self._lines[split]:
        raise ValueError(f'the {split} split has no text')
    return self._lines[split]

  def tokenizer_settings(self) -> dict[str, Any]:
    d = self.config.data
    settings = {
        'corpus': d.corpus,
        'vocab_size': d.vocab_size,
        'shared': True,
        'model_type': d.spm_model_type,
        'character_coverage': d.character_coverage,
        'max_train_examples': d.max_train_examples,
    }
    if d.corpus == 'multi30k':
      settings.update(languages=d.languages, variant=d.variant)
    else:
      settings['train_files'] = d.train_files
    return settings

  def tokenizer_texts(self) -> tuple[list[str], list[str]]:
    return self.lines('train'), []

  def encode(self, split: str) -> list[list[int]]:
    """Token ids + eos of every line of `split`."""
    if split not in self._ids:
      self._ids[split] = self.tokenizer.encode_target(self.lines(split))
    return self._ids[split]

  # ---- Task interface -------------------------------------------------------------------

  def usage_hint(self, workdir: str) -> str:
    plot = '' if self.model_config.architecture == 'rnn' else ' --plot_attention /tmp/attention'
    return f'python run.py generate --workdir {workdir} "A dog" --num_samples 3{plot}'

  def build_model(self) -> nn.Module:
    return language_model(self.model_config)

  def dummy_inputs(self) -> tuple[np.ndarray, ...]:
    return (np.ones((1, 8), np.int32),)

  def model_inputs(self, batch: Batch) -> tuple[np.ndarray, ...]:
    return (batch['inputs'],)

  def train_source(self) -> data_lib.SentenceSource:
    d = self.config.data
    ids = self.encode('train')
    keep = [s for s in ids if len(s) <= d.max_train_len]
    if not keep:
      raise ValueError(f'no training line is at most data.max_train_len={d.max_train_len} tokens')
    if len(keep) < len(ids):
      logging.info(
          'Dropped %d of %d training lines longer than %d tokens.',
          len(ids) - len(keep),
          len(ids),
          d.max_train_len,
      )
    bucketing = batching.Bucketing(
        tokens_per_batch=d.tokens_per_batch,
        max_rows=self.config.batch_size,
        length_multiple=d.length_multiple,
        row_multiple=d.row_multiple,
    )
    source = data_lib.SentenceSource(keep, bucketing, seed=self.config.seed)
    stats = source.padding_stats()
    logging.info(
        'Token-budget batches: %d per epoch, %d shapes; padding %.1f%%; %d tokens per epoch.',
        stats['batches_per_epoch'],
        stats['num_shapes'],
        100 * stats['target_padding'],
        sum(len(s) for s in keep),
    )
    return source

  def eval_batches(self, split: str) -> Iterator[Batch]:
    if split not in self.eval_splits:
      raise ValueError(f'unknown split {split!r}; choose one of {list(self.eval_splits)}')
    max_len = self.model_config.max_len
    ids = self.encode(split)
    too_long = sum(len(s) > max_len for s in ids)
    if too_long:
      logging.warning(
          '%s: %d lines longer than max_len=%d tokens are truncated (their byte counts are '
          'not), so per-byte figures are slightly optimistic.',
          split,
          too_long,
          max_len,
      )
    ids = [batching.truncate(s, max_len) for s in ids]
    yield from data_lib.eval_batches(
        ids,
        data_lib.byte_counts(self.lines(split)),
        self.config.eval_batch_size,
        self.config.data.length_multiple,
    )

  def batch_metrics(self, batch: Batch, metrics: Metrics) -> Metrics:
    """nll_per_byte where the batch counts each line's bytes (eval batches)."""
    if 'bytes' not in batch:
      return {}
    return {'nll_per_byte': (metrics['nll'][0], (batch['bytes'] * batch['weight']).sum())}

  def evaluate(self, ctx: EvalContext, split: str) -> dict[str, float]:
    metrics = ctx.average(self.eval_batches(split))
    metrics['perplexity'] = float(math.exp(min(metrics['nll'], 50.0)))
    metrics['byte_perplexity'] = float(math.exp(min(metrics['nll_per_byte'], 50.0)))
    metrics['bits_per_byte'] = metrics['nll_per_byte'] / math.log(2.0)
    return metrics

  def make_plots(self, ctx: EvalContext, plot_dir: str, history) -> list[str]:
    """Causal self-attention of the first test line (a Transformer's); samples into
    WORKDIR/samples.txt."""
    from experiments.lm import generation  # pylint: disable=g-import-not-at-top

    generator = generation.Generator(ctx.model, self.tokenizer, mesh=ctx.mesh)
    if self.workdir is not None:
      g = self.config.generation
      prompts = ['', *generation.first_words(self.lines(self.test_splits[0]), 3, 2)]
      samples = generator.generate(
          ctx.params,
          prompts,
          temperature=g.temperature,
          top_k=g.top_k,
          max_new_tokens=g.max_new_tokens,
          seed=0,
      )
      path = os.path.join(self.workdir, 'samples.txt')
      with open(path, 'w', encoding='utf-8') as f:
        f.write(
            f'# step {ctx.step}, temperature {g.temperature}, top_k {g.top_k}, seed 0; '
            'prompt -> continuation\n'
        )
        f.writelines(f'{p!r} -> {s.text!r}\n' for p, s in zip(prompts, samples))
      logging.info('Samples written to %s', path)
    if self.model_config.architecture == 'rnn':  # no attention to plot
      return []
    line = self.lines(self.test_splits[0])[0]
    return generator.plot_attention(
        ctx.params,
        line,
        os.path.join(plot_dir, 'causal_attention'),
        title=f'{self.test_splits[0]} #0',
    )
