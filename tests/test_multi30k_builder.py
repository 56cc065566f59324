"""experiments/text/multi30k.py: the TFDS Multi30k builder from local gz files."""

from __future__ import annotations

import gzip
import os

import pytest

from experiments.text import multi30k
from experiments.text.synthetic_corpus import detok, translate_words, write_corpus

tfds = pytest.importorskip('tensorflow_datasets')


def _read(builder, split):
  cfg = builder.builder_config
  source = builder.as_data_source(split=split)  # ArrayRecord, random access (no TensorFlow)
  rows = sorted((source[i] for i in range(len(source))), key=lambda ex: ex['line'])
  return [(ex[cfg.source].decode(), ex[cfg.target].decode()) for ex in rows]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('multi30k_src') / 'multi30k')
  return root, write_corpus(root)


def test_configs_cover_all_directions_and_variants():
  names = {c.name for c in multi30k.Multi30k.BUILDER_CONFIGS}
  assert len(names) == 12
  assert multi30k.Multi30k.BUILDER_CONFIGS[0].name == 'en-de-raw'  # the default
  assert {'en-de-tok', 'de-en-raw', 'fr-de-tok', 'en-fr-raw'} <= names


def test_tiny_corpus_splits_and_direction(corpus, tmp_path):
  root, english = corpus
  builder = multi30k.prepare_multi30k(
      'de', 'en', 'raw', source_dir=root, data_dir=str(tmp_path), verify_checksums=False
  )
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert sizes == {k: len(v) for k, v in english.items()}
  assert builder.info.supervised_keys == ('de', 'en')
  pairs = _read(builder, 'test_2017')
  assert pairs == [(detok(translate_words(s, 'de')), detok(s)) for s in english['test_2017']]

  tok = multi30k.prepare_multi30k(
      'en', 'fr', 'tok', source_dir=root, data_dir=str(tmp_path), verify_checksums=False
  )
  assert _read(tok, 'train')[:3] == [(s, translate_words(s, 'fr')) for s in english['train'][:3]]
  # Prepared once: a second call reuses the files without the source folder.
  again = multi30k.prepare_multi30k(
      'en', 'fr', 'tok', source_dir='/nonexistent', data_dir=str(tmp_path), verify_checksums=False
  )
  assert again.info.splits['train'].num_examples == len(english['train'])


def test_bad_inputs(corpus, tmp_path):
  root, _ = corpus
  with pytest.raises(ValueError, match='checksum mismatch for .*train.en.gz'):
    multi30k.prepare_multi30k('en', 'de', 'raw', source_dir=root, data_dir=str(tmp_path / 'a'))
  with pytest.raises(ValueError, match="unknown variant 'lower'"):
    multi30k.prepare_multi30k('en', 'de', 'lower', source_dir=root)
  with pytest.raises(ValueError, match="unknown source language 'cs'"):
    multi30k.prepare_multi30k('cs', 'de', source_dir=root)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    multi30k.prepare_multi30k(
        'en', 'de', source_dir=str(tmp_path / 'missing'), data_dir=str(tmp_path / 'b')
    )
  # Files that are not line-aligned.
  broken = tmp_path / 'broken'
  write_corpus(
      str(broken),
      sizes={'train': 4, 'validation': 2, 'test_2016': 2, 'test_2017': 2, 'test_2018': 2},
  )
  with gzip.open(broken / 'val.de.gz', 'wt', encoding='utf-8') as f:
    f.write('nur eine zeile\n')
  with pytest.raises(ValueError, match='line-aligned'):
    multi30k.prepare_multi30k(
        'en', 'de', source_dir=str(broken), data_dir=str(tmp_path / 'c'), verify_checksums=False
    )
  os.remove(broken / 'test_2018_flickr.en.gz')
  with pytest.raises(FileNotFoundError, match='missing file .*test_2018_flickr.en.gz'):
    multi30k.prepare_multi30k(
        'en', 'de', source_dir=str(broken), data_dir=str(tmp_path / 'd'), verify_checksums=False
    )


@pytest.mark.skipif(
    not os.environ.get('TRANSFORMER_DATA_DIR')
    or not os.path.isdir(os.path.join(os.environ.get('TRANSFORMER_DATA_DIR', ''), 'multi30k')),
    reason='needs $TRANSFORMER_DATA_DIR/multi30k (the real Multi30k files)',
)
def test_real_multi30k(tmp_path):
  builder = multi30k.prepare_multi30k('en', 'de', 'tok', data_dir=str(tmp_path))  # checksums on
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert sizes == {
      'train': 29000,
      'validation': 1014,
      'test_2016': 1000,
      'test_2017': 1000,
      'test_2018': 1071,
  }
  root = os.path.join(os.environ['TRANSFORMER_DATA_DIR'], 'multi30k', 'tok')
  lines = {}
  for lang in ('en', 'de'):
    with gzip.open(
        os.path.join(root, f'test_2016_flickr.lc.norm.tok.{lang}.gz'), 'rt', encoding='utf-8'
    ) as f:
      lines[lang] = f.read().splitlines()
  pairs = _read(builder, 'test_2016')
  assert pairs == list(zip(lines['en'], lines['de']))  # file order restored from 'line'
  assert pairs[0][0] == 'a man in an orange hat starring at something .'
