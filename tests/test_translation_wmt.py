"""WMT14 through TFDS (mocked: no download) and configs/translation_wmt14.py on CPU."""

from __future__ import annotations

import pytest

from conftest import _override

tfds = pytest.importorskip('tensorflow_datasets')


def test_direction_follows_the_config(load_config):
  from experiments.translation import data as data_lib  # pylint: disable=g-import-not-at-top

  config = load_config('translation_wmt14')
  with tfds.testing.mock_data(num_examples=6):  # WMT14 is read as ArrayRecord (data_source)
    source = tfds.data_source('wmt14_translate/de-en', split='validation')
    raw = [
        {k: v.encode() if isinstance(v, str) else v for k, v in source[i].items()} for i in range(6)
    ]
    en_de = data_lib.load_splits(config.data, ('validation',))['validation']
    config.data.source_lang, config.data.target_lang = 'de', 'en'
    de_en = data_lib.load_splits(config.data, ('validation',))['validation']
  assert en_de.sources == [ex['en'].decode() for ex in raw]
  assert en_de.targets == [ex['de'].decode() for ex in raw]
  assert (de_en.sources, de_en.targets) == (en_de.targets, en_de.sources)


def test_wmt14_config_runs_a_few_steps_on_cpu(load_config, tmp_path):
  """The paper's base model as configured (d_model 512, 8 heads, FFN 2048, noam, bf16, ...)
  with the batch, the steps and -- to keep CPU compilation short -- the depth cut down."""
  from experiments.core import configuration, loop  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  config = _override(
      load_config('translation_wmt14'),
      {
          'num_train_steps': 2,
          'eval_every_steps': 2,
          'checkpoint_every_steps': 2,
          'log_every_steps': 1,
          'batch_size': 16,
          'eval_batch_size': 8,
          'data.tokens_per_batch': 512,
          'data.vocab_size': 100,
          'data.length_multiple': 32,
          'decoding.beam_size': 2,
          'decoding.eval_beam_size': 1,
          'decoding.batch_size': 8,
          'decoding.max_extra_len': 4,
          'model.num_encoder_layers': 1,
          'model.num_decoder_layers': 1,
      },
  )
  configuration.validate(config, jax.device_count())
  with tfds.testing.mock_data(num_examples=8):
    result = loop.train_and_evaluate(config, str(tmp_path / 'wmt'))
  assert result.step == 2
  assert set(result.final_metrics) >= {'test/bleu', 'test/loss', 'test/perplexity'}
  params = sum(x.size for x in jax.tree.leaves(result.state.params))
  assert params > 7_000_000  # 1+1 layers of d_model 512, FFN 2048 (embeddings are tiny here)
