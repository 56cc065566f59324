"""experiments/text/tokenizer.py: SentencePiece training, round trip, reuse."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments.text import tokenizer as tok_lib
from experiments.text.synthetic_corpus import english_sentences, translate_words

SETTINGS = {
    'vocab_size': 60,
    'shared': True,
    'model_type': 'unigram',
    'character_coverage': 1.0,
    'dataset': 'tiny',
}


def _texts():
  en = english_sentences()
  return en, [translate_words(s, 'de') for s in en]


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
  asset_dir = str(tmp_path_factory.mktemp('assets'))
  return asset_dir, tok_lib.load_or_train(asset_dir, SETTINGS, _texts)


def test_round_trip_and_special_ids(shared):
  _, tok = shared
  assert tok.shared and tok.source_vocab_size == tok.target_vocab_size <= 60
  en, de = _texts()
  src, tgt = tok.encode_source(en), tok.encode_target(de)
  for text, ids in zip(de, tgt):
    assert ids[-1] == tok_lib.EOS_ID and tok_lib.PAD_ID not in ids and tok_lib.BOS_ID not in ids
    assert tok.decode_target(ids) == text
    # bos/pad are skipped and decoding stops at the first eos.
    assert tok.decode_target([tok_lib.BOS_ID, *ids, 7, 8, tok_lib.PAD_ID]) == text
  assert all(s[-1] == tok_lib.EOS_ID for s in src)
  assert tok.source.decode(src[0][:-1]) == en[0]
  pieces = tok.source_pieces(src[0])
  assert pieces[-1] == '</s>' and ''.join(pieces[:-1]).replace('▁', ' ').strip() == en[0]
  # Umlauts survive (character_coverage=1.0).
  assert tok.decode_target(tok.encode_target(['groß läuft schläft'])[0]) == 'groß läuft schläft'


def test_reused_never_retrained(shared):
  asset_dir, tok = shared
  model = os.path.join(asset_dir, 'spm.model')
  before = os.stat(model).st_mtime_ns

  def fail():
    raise AssertionError('must not retrain')

  again = tok_lib.load_or_train(asset_dir, SETTINGS, fail, allow_training=False)
  assert os.stat(model).st_mtime_ns == before
  ids = tok.encode_source(['a dog runs .'])
  assert again.encode_source(['a dog runs .']) == ids
  with pytest.raises(tok_lib.TokenizerMismatchError, match='vocab_size: stored 60, config 80'):
    tok_lib.load_or_train(asset_dir, {**SETTINGS, 'vocab_size': 80}, fail)
  with open(os.path.join(asset_dir, tok_lib.SETTINGS_FILE)) as f:
    assert json.load(f) == SETTINGS


def test_missing_tokenizer_with_checkpoints_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='refusing to train a new vocabulary'):
    tok_lib.load_or_train(str(tmp_path), SETTINGS, _texts, allow_training=False)
  assert not os.listdir(tmp_path)


def test_separate_vocabularies(tmp_path, shared):
  tok = tok_lib.load_or_train(str(tmp_path), {**SETTINGS, 'shared': False}, _texts)
  assert not tok.shared
  assert sorted(os.listdir(tmp_path)) == [
      'spm_source.model',
      'spm_source.vocab',
      'spm_target.model',
      'spm_target.vocab',
      'tokenizer.json',
  ]
  en, de = _texts()
  assert [tok.decode_target(ids) for ids in tok.encode_target(de)] == de
  # 'ä' only occurs in German: unknown to the English-only source vocabulary, known to the
  # shared one.
  assert tok_lib.UNK_ID in tok.encode_source(['ä'])[0]
  assert tok_lib.UNK_ID not in shared[1].encode_source(['ä'])[0]
  assert np.all(np.asarray(tok.encode_source(['a dog'])[0]) < tok.source_vocab_size)
