"""Machine translation with the library's encoder-decoders (model.architecture: the Transformer
or the RNN baseline) on the shared trainer.

Config sections read here (see configs/translation_multi30k.py, configs/translation_wmt14.py):
  data.dataset            'multi30k' | 'wmt14'
  data.source_lang/target_lang   direction, e.g. 'en' -> 'de'
  data.variant            'raw' | 'tok' (Multi30k's lowercased tokenized files; BLEU kind follows)
  data.data_dir           root holding multi30k/ ('' = $TRANSFORMER_DATA_DIR)
  data.tfds_data_dir      where TFDS keeps prepared datasets ('' = TFDS default)
  data.verify_checksums   Multi30k: check the files' SHA-256 against the official ones
  data.vocab_size, data.shared_vocab, data.spm_model_type, data.character_coverage
                          SentencePiece, trained once into WORKDIR/assets/ and reused
  data.tokens_per_batch, data.length_multiple, data.row_multiple
                          token-budget batching (batching.py); batch_size caps the rows
  data.max_train_len      training pairs longer than this (tokens, incl. eos) are dropped
  data.max_train_examples 0 = all
  model.*                 transformer.models.EncoderDecoderConfig fields (experiments/core/model_config.py)
                          except the vocabulary sizes and pad_id (taken from the tokenizer)
  decoding.beam_size, decoding.alpha, decoding.max_extra_len   test-time search
  decoding.eval_beam_size search used for the periodic validation BLEU (1 = greedy: fast)
  decoding.batch_size     sentences per decoding batch
  decoding.length_multiple  decoding pads sources to a multiple of this (fewer compilations)
  label_smoothing         loss of training and evaluation; `nll`/`perplexity` are unsmoothed
Best checkpoint: highest validation BLEU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging

from experiments.core import model_config as model_config_lib
from experiments.core import registry
from experiments.core.configuration import require
from experiments.core.task import Batch, ConfigError, EvalContext, Metrics
from experiments.text import batching
from experiments.translation import bleu as bleu_lib
from experiments.translation import data as data_lib
from experiments.translation import grain_pipeline
from experiments.translation import inference
from experiments.text import text_checks
from experiments.text import tokenizer as tok_lib
from experiments.text.text_task import TextTask
from transformer.models import EncoderDecoderConfig
from transformer.rnn import encoder_decoder

DERIVED_MODEL_FIELDS = registry.entry('translation').derived


def build_model_config(
    config: ml_collections.ConfigDict, src_vocab: int, tgt_vocab: int
) -> EncoderDecoderConfig:
  """EncoderDecoderConfig from config.model plus the vocabulary sizes and pad id; a bad value
  is a ConfigError naming model.<field>."""
  return model_config_lib.build(
      'translation',
      config.model,
      src_vocab_size=src_vocab,
      tgt_vocab_size=tgt_vocab,
      pad_id=tok_lib.PAD_ID,
  )


def search_settings(
    config: ml_collections.ConfigDict, beam_size: int | None = None
) -> inference.SearchSettings:
  d = config.decoding
  return inference.SearchSettings(
      beam_size=beam_size or d.beam_size, alpha=d.alpha, max_extra_len=d.max_extra_len
  )


class TranslationTask(TextTask):
  """Sentence translation; metrics loss/nll/perplexity/token_accuracy and BLEU."""

  best_metric = 'bleu'
  best_mode = 'max'
  asset_prefix = 'translation-assets-'
  target_key = 'target_out'

  @classmethod
  def validate_data(cls, d: ml_collections.ConfigDict) -> None:
    spec = text_checks.require_known(d, 'dataset', data_lib.DATASETS)
    for field in ('source_lang', 'target_lang'):
      require(
          d[field] in spec.languages,
          f'data.{field}',
          f'{d[field]!r} is not a language of {d.dataset}; choose from {spec.languages}',
      )
    require(
        d.source_lang != d.target_lang,
        'data.target_lang',
        f'source and target language are both {d.source_lang!r}',
    )
    require(
        d.variant in spec.variants,
        'data.variant',
        f'{d.dataset} has text variants {spec.variants}, got {d.variant!r}',
    )

  @classmethod
  def validate_task(cls, config: ml_collections.ConfigDict) -> None:
    d, m = config.data, config.model
    for name in DERIVED_MODEL_FIELDS:
      require(name not in m, f'model.{name}', 'is derived from the tokenizer; remove it')
    require(
        not m.share_embeddings or d.shared_vocab,
        'model.share_embeddings',
        'needs one vocabulary for both languages (data.shared_vocab=True)',
    )
    dec = config.decoding
    for field in ('beam_size', 'eval_beam_size', 'max_extra_len', 'batch_size', 'length_multiple'):
      require(dec[field] >= 1, f'decoding.{field}', f'must be >= 1, got {dec[field]}')
    require(dec.alpha >= 0, 'decoding.alpha', f'must be >= 0, got {dec.alpha}')

  @classmethod
  def model_config_for(
      cls, config: ml_collections.ConfigDict, source_vocab: int, target_vocab: int
  ) -> EncoderDecoderConfig:
    return build_model_config(config, source_vocab, target_vocab)

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config, data_lib.DATASETS[config.data.dataset])
    self._text: dict[str, data_lib.Split] = {}
    self._raw_refs: dict[str, list[str]] = {}
    self._id_cache: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
    self._translator: inference.Translator | None = None

  # ---- data ----------------------------------------------------------------------------

  def text(self, split: str) -> data_lib.Split:
    """Sentence pairs of `split` (loaded on first use)."""
    if split not in ('train', *self.eval_splits):
      raise ValueError(f'unknown split {split!r}; choose one of {["train", *self.eval_splits]}')
    if split not in self._text:
      self._text.update(data_lib.load_splits(self.config.data, (split,)))
    return self._text[split]

  def tokenizer_settings(self) -> dict[str, Any]:
    d = self.config.data
    return {
        'dataset': d.dataset,
        'source_lang': d.source_lang,
        'target_lang': d.target_lang,
        'variant': d.variant,
        'vocab_size': d.vocab_size,
        'shared': d.shared_vocab,
        'model_type': d.spm_model_type,
        'character_coverage': d.character_coverage,
        'max_train_examples': d.max_train_examples,
    }

  def tokenizer_texts(self) -> tuple[list[str], list[str]]:
    """WMT14: a sample read from the ArrayRecord files, not all 4.5M pairs."""
    return data_lib.tokenizer_texts(self.config.data, lambda: self.text('train'))

  def _ids(self, split: str, truncate: bool = True) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of a split (incl. eos), truncated to the model's max_len (eos kept)."""
    if split not in self._id_cache:
      pairs = self.text(split)
      self._id_cache[split] = (
          self.tokenizer.encode_source(pairs.sources),
          self.tokenizer.encode_target(pairs.targets),
      )
    src, tgt = self._id_cache[split]
    if truncate:
      max_len = self.model_config.max_len
      src = [batching.truncate(s, max_len) for s in src]
      tgt = [batching.truncate(t, max_len) for t in tgt]
    return src, tgt

  def prepare_data(self) -> list[str]:
    return data_lib.prepare(self.config.data)

  # ---- Task interface -------------------------------------------------------------------

  def usage_hint(self, workdir: str) -> str:
    return (
        f'echo "A dog runs in the park." | python run.py translate --workdir {workdir} '
        '--plot_attention /tmp/attention'
    )

  def build_model(self) -> nn.Module:
    return encoder_decoder(self.model_config)  # model.architecture: Transformer or RNN

  def dummy_inputs(self) -> tuple[np.ndarray, ...]:
    return (np.ones((1, 8), np.int32), np.ones((1, 8), np.int32))

  def model_inputs(self, batch: Batch) -> tuple[np.ndarray, ...]:
    return (batch['source'], batch['target_in'])

  def bucketing(self) -> batching.Bucketing:
    d = self.config.data
    return batching.Bucketing(
        tokens_per_batch=d.tokens_per_batch,
        max_rows=self.config.batch_size,
        length_multiple=d.length_multiple,
        row_multiple=d.row_multiple,
    )

  def train_source(self) -> grain_pipeline.TranslationGrainSource:
    """Token-budget batches through Grain (grain_pipeline.py): pairs read by random access
    (WMT14 from ArrayRecord files), tokenized in `data.num_workers` worker processes, each
    process reading only its rows; the batches of batching.BucketedSource for each step."""
    d = self.config.data
    workers = d.get('num_workers', 0)
    records = data_lib.train_records(d, lambda: self.text('train'))
    lengths = grain_pipeline.cached_pair_lengths(
        records,
        self.tokenizer,
        os.path.join(self.workdir, 'assets') if self.workdir else None,
        repr(sorted(self.tokenizer_settings().items())),
        num_workers=workers,
    )
    source = grain_pipeline.TranslationGrainSource(
        records,
        self.tokenizer,
        self.bucketing(),
        seed=self.config.seed,
        max_train_len=d.max_train_len,
        lengths=lengths,
        num_workers=workers,
    )
    stats = source.padding_stats()
    logging.info(
        'Token-budget batches: %d per epoch, %d shapes %s; padding: source %.1f%%, '
        'target %.1f%%.',
        stats['batches_per_epoch'],
        stats['num_shapes'],
        source.batch_shapes,
        100 * stats['source_padding'],
        100 * stats['target_padding'],
    )
    return source

  def eval_batches(self, split: str) -> Iterator[Batch]:
    if split not in self.eval_splits:
      raise ValueError(f'unknown split {split!r}; choose one of {list(self.eval_splits)}')
    src, tgt = self._ids(split)
    for _, batch in batching.eval_batches(
        src, tgt, self.config.eval_batch_size, self.config.data.length_multiple
    ):
      yield batch

  def batch_metrics(self, batch: Batch, metrics: Metrics) -> Metrics:
    """Padding share of the batch (real rows only; both sides): should stay small."""
    del metrics
    rows = batch['weight'][:, None]
    positions = rows.sum() * (batch['source'].shape[1] + batch['target_out'].shape[1])
    real = ((batch['source'] != 0) * rows).sum() + ((batch['target_out'] != 0) * rows).sum()
    return {'padding': (positions - real, positions)}

  def translator(
      self, model: nn.Module | None = None, mesh: jax.sharding.Mesh | None = None
  ) -> inference.Translator:
    if self._translator is None or (model is not None and self._translator.model is not model):
      self._translator = inference.Translator(
          model if model is not None else self.build_model(),
          self.tokenizer,
          batch_size=self.config.decoding.batch_size,
          length_multiple=self.config.decoding.length_multiple,
          mesh=mesh,
      )
    return self._translator

  def bleu(self, hypotheses: list[str], split: str) -> dict[str, bleu_lib.BleuResult]:
    """{metric name: BLEU} of decoded `hypotheses` (model output text) of `split`.

    raw variant: 'bleu' = detokenized sacreBLEU against the raw references.
    tok variant: 'bleu' = tokenized BLEU against the tok references (the literature's
    number) and 'bleu_detok_lc' = case-insensitive sacreBLEU of the Moses-detokenized
    output against the raw references."""
    d = self.config.data
    if d.variant == 'raw':
      return {'bleu': bleu_lib.detokenized_bleu(hypotheses, self.text(split).targets)}
    from experiments.text.moses import tok_text  # pylint: disable=g-import-not-at-top

    if split not in self._raw_refs:
      self._raw_refs[split] = data_lib.load_splits(d, (split,), variant='raw')[split].targets
    detok = tok_text(d.target_lang)
    return {
        'bleu': bleu_lib.tokenized_bleu(hypotheses, self.text(split).targets),
        'bleu_detok_lc': bleu_lib.detokenized_bleu(
            [detok.detokenize(h) for h in hypotheses], self._raw_refs[split], lowercase=True
        ),
    }

  def evaluate(self, ctx: EvalContext, split: str) -> dict[str, float]:
    """Loss metrics, perplexity, and BLEU of the decoded split (greedy during training's
    validation when decoding.eval_beam_size == 1, else beam search)."""
    metrics = ctx.average(self.eval_batches(split))
    metrics['perplexity'] = float(math.exp(min(metrics['nll'], 50.0)))
    beam = self.config.decoding.eval_beam_size if split == self.validation_split else None
    settings = search_settings(self.config, beam)
    translator = self.translator(ctx.model, ctx.mesh)
    src, _ = self._ids(split)
    outputs = translator.translate_ids(ctx.params, src, settings)
    hypotheses = [self.tokenizer.decode_target(ids) for ids, _ in outputs]
    results = self.bleu(hypotheses, split)
    for name, result in results.items():
      metrics[name] = result.score
      logging.info(
          '%s step %d, beam %d, alpha %s: %s = %s',
          split,
          ctx.step,
          settings.beam_size,
          settings.alpha,
          name,
          result,
      )
    if self.workdir is not None:
      out_dir = os.path.join(self.workdir, 'translations')
      os.makedirs(out_dir, exist_ok=True)
      base = os.path.join(out_dir, f'{split}-step{ctx.step}')
      with open(base + '.txt', 'w', encoding='utf-8') as f:
        f.writelines(h + '\n' for h in hypotheses)
      with open(base + '.bleu.txt', 'w', encoding='utf-8') as f:
        for name, result in results.items():
          f.write(f'{name}: {result}\n')
        f.write(
            f'beam_size={settings.beam_size} alpha={settings.alpha} '
            f'max_extra_len={settings.max_extra_len}\n'
        )
    return metrics

  def make_plots(self, ctx: EvalContext, plot_dir: str, history) -> list[str]:
    """Cross-attention of the first test sentence (head-averaged and per head)."""
    from experiments.translation import attention_plots  # pylint: disable=g-import-not-at-top

    split = self.test_splits[0]
    sentence = self.text(split).sources[0]
    translator = self.translator(ctx.model, ctx.mesh)
    (result,) = translator.translate(ctx.params, [sentence], search_settings(self.config))
    return attention_plots.plot_cross_attention(
        translator,
        ctx.params,
        result,
        os.path.join(plot_dir, 'cross_attention'),
        title=f'{split} #0',
    )
