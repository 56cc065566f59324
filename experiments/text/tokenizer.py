"""SentencePiece vocabularies: trained once on the training split, stored in the workdir.

Ids are fixed across the project: pad 0, unk 1, bos 2, eos 3. Source sequences end with
eos; the decoder reads `[bos] + target` and predicts `target + [eos]`.

`load_or_train` trains when `assets/` holds no tokenizer and otherwise REUSES it after
checking that it was trained with the same settings; it never retrains silently (a
mismatch, or a missing tokenizer in a workdir that already has checkpoints, is an error).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm
from absl import logging

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SETTINGS_FILE = 'tokenizer.json'


class TokenizerMismatchError(ValueError):
  """The workdir's tokenizer was trained with other settings than the config asks for."""


def train_sentencepiece(
    texts: Iterable[str],
    model_path: str,
    *,
    vocab_size: int,
    model_type: str = 'unigram',
    character_coverage: float = 1.0,
    seed: int = 0,
) -> None:
  """Trains a SentencePiece model on `texts` and writes it to `model_path` (+ .vocab)."""
  spm.set_random_generator_seed(seed)
  prefix = model_path[: -len('.model')] if model_path.endswith('.model') else model_path
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts),
      model_prefix=prefix,
      vocab_size=vocab_size,
      model_type=model_type,
      character_coverage=character_coverage,
      pad_id=PAD_ID,
      unk_id=UNK_ID,
      bos_id=BOS_ID,
      eos_id=EOS_ID,
      hard_vocab_limit=False,  # tiny corpora get a smaller vocabulary instead of an error
      input_sentence_size=2_000_000,
      shuffle_input_sentence=True,
      num_threads=os.cpu_count() or 1,
      minloglevel=2,
  )


class Tokenizer:
  """Source/target SentencePiece processors (the same object when the vocabulary is shared)."""

  def __init__(
      self, source: spm.SentencePieceProcessor, target: spm.SentencePieceProcessor | None = None
  ):
    self.source = source
    self.target = target if target is not None else source
    for name, sp in (('source', self.source), ('target', self.target)):
      ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
      if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise ValueError(
            f'{name} SentencePiece model has special ids (pad, unk, bos, eos) = '
            f'{ids}, expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}'
        )

  @classmethod
  def load(cls, source_path: str, target_path: str | None = None) -> Tokenizer:
    src = spm.SentencePieceProcessor(model_file=source_path)
    tgt = spm.SentencePieceProcessor(model_file=target_path) if target_path else None
    return cls(src, tgt)

  @property
  def shared(self) -> bool:
    return self.source is self.target

  @property
  def source_vocab_size(self) -> int:
    return self.source.get_piece_size()

  @property
  def target_vocab_size(self) -> int:
    return self.target.get_piece_size()

  def encode_source(self, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text followed by eos."""
    return self.source.encode(list(texts), add_eos=True)

  def encode_target(self, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text followed by eos (the decoder's labels)."""
    return self.target.encode(list(texts), add_eos=True)

  def decode_target(self, ids: Sequence[int] | np.ndarray) -> str:
    """Text of target ids, stopping at the first eos; pad/bos are dropped."""
    out = []
    for i in np.asarray(ids).tolist():
      if i == EOS_ID:
        break
      if i not in (PAD_ID, BOS_ID):
        out.append(i)
    return self.target.decode(out)

  def source_pieces(self, ids: Sequence[int]) -> list[str]:
    return [self.source.id_to_piece(int(i)) for i in ids]

  def target_pieces(self, ids: Sequence[int]) -> list[str]:
    return [self.target.id_to_piece(int(i)) for i in ids]


def _settings_diff(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
  return [
      f'{k}: stored {stored.get(k)!r}, config {v!r}'
      for k, v in wanted.items()
      if stored.get(k) != v
  ]


def load_or_train(
    asset_dir: str, settings: dict[str, Any], train_texts: Any, *, allow_training: bool = True
) -> Tokenizer:
  """Loads the tokenizer in `asset_dir`, or trains it there when absent.

  settings: JSON-able dict describing the vocabulary (vocab_size, model_type, shared,
    character_coverage, dataset, ...); stored next to the model and compared on reuse.
  train_texts: callable returning `(source_texts, target_texts)` of the training split;
    only called when training is needed.
  allow_training: False when the workdir already holds checkpoints (resume / eval /
    translate): then a missing tokenizer is an error instead of a silent retrain.
  """
  settings_path = os.path.join(asset_dir, SETTINGS_FILE)
  shared = bool(settings['shared'])
  names = ['spm.model'] if shared else ['spm_source.model', 'spm_target.model']
  paths = [os.path.join(asset_dir, n) for n in names]
  if os.path.exists(settings_path):
    with open(settings_path) as f:
      stored = json.load(f)
    diffs = _settings_diff(stored, settings)
    if diffs:
      raise TokenizerMismatchError(
          f'the tokenizer in {asset_dir} was trained with other settings ({"; ".join(diffs)}). '
          'Use a new --workdir, or the config the workdir was trained with.'
      )
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f'tokenizer files missing: {missing} (settings file present).')
    logging.info('Reusing SentencePiece tokenizer %s', paths)
    return Tokenizer.load(*paths)
  if not allow_training:
    raise FileNotFoundError(
        f'no tokenizer in {asset_dir}, but the workdir already holds checkpoints: refusing to '
        'train a new vocabulary that would not match them. Restore assets/ from the original run.'
    )

  src_texts, tgt_texts = train_texts()
  os.makedirs(asset_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=asset_dir, prefix='.tokenizer-')
  try:
    common = dict(
        vocab_size=settings['vocab_size'],
        model_type=settings['model_type'],
        character_coverage=settings['character_coverage'],
        seed=settings.get('seed', 0),
    )
    if shared:
      train_sentencepiece(list(src_texts) + list(tgt_texts), os.path.join(tmp, names[0]), **common)
    else:
      train_sentencepiece(src_texts, os.path.join(tmp, names[0]), **common)
      train_sentencepiece(tgt_texts, os.path.join(tmp, names[1]), **common)
    for name in names:
      for ext in ('.model', '.vocab'):
        base = name[: -len('.model')] + ext
        os.replace(os.path.join(tmp, base), os.path.join(asset_dir, base))
    with open(os.path.join(tmp, SETTINGS_FILE), 'w') as f:
      json.dump(settings, f, indent=2, sort_keys=True)
    os.replace(os.path.join(tmp, SETTINGS_FILE), settings_path)  # written last = complete
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  tokenizer = Tokenizer.load(*paths)
  logging.info(
      'Trained SentencePiece tokenizer %s (vocab %d/%d)',
      paths,
      tokenizer.source_vocab_size,
      tokenizer.target_vocab_size,
  )
  return tokenizer
