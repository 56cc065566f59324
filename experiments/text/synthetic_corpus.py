"""A tiny generated Multi30k-like parallel corpus (en/de/fr, raw and tok files): for tests and
for `run.py doctor`, which trains on it without any data folder."""

from __future__ import annotations

import gzip
import os

# Word-for-word "translations": enough structure for a tiny model to memorise.
_WORDS = {
    'a': ('ein', 'un'),
    'dog': ('hund', 'chien'),
    'cat': ('katze', 'chat'),
    'man': ('mann', 'homme'),
    'woman': ('frau', 'femme'),
    'runs': ('läuft', 'court'),
    'sleeps': ('schläft', 'dort'),
    'eats': ('isst', 'mange'),
    'in': ('in', 'dans'),
    'the': ('dem', 'le'),
    'park': ('park', 'parc'),
    'house': ('haus', 'maison'),
    'red': ('rot', 'rouge'),
    'big': ('groß', 'grand'),
    'small': ('klein', 'petit'),
}
_SUBJECTS = ['a dog', 'a cat', 'a man', 'a woman', 'a big dog', 'a small cat', 'a red dog']
_VERBS = ['runs', 'sleeps', 'eats']
_PLACES = ['', ' in the park', ' in the house']

SPLIT_STEMS = {
    'train': 'train',
    'validation': 'val',
    'test_2016': 'test_2016_flickr',
    'test_2017': 'test_2017_flickr',
    'test_2018': 'test_2018_flickr',
}


def english_sentences() -> list[str]:
  """Lowercased, tokenized English sentences (63 distinct)."""
  return [f'{s} {v}{p} .' for s in _SUBJECTS for v in _VERBS for p in _PLACES]


def translate_words(tok_sentence: str, lang: str) -> str:
  i = {'de': 0, 'fr': 1}[lang]
  return ' '.join(_WORDS[w][i] if w in _WORDS else w for w in tok_sentence.split())


def detok(tok_sentence: str) -> str:
  """'a dog runs .' -> 'A dog runs.' (the 'raw' form)."""
  text = tok_sentence.replace(' .', '.')
  return text[0].upper() + text[1:]


def write_corpus(
    root: str, sizes: dict[str, int] | None = None, splits: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
  """Writes root/{stem}.{lang}.gz and root/tok/{stem}.lc.norm.tok.{lang}.gz.

  `splits` gives the English tok sentences per split (default: consecutive slices of
  `english_sentences()` with `sizes`). Returns the English tok sentences per split.
  """
  if splits is None:
    sizes = sizes or {'train': 20, 'validation': 5, 'test_2016': 4, 'test_2017': 3, 'test_2018': 6}
    pool, splits, start = english_sentences(), {}, 0
    for split, n in sizes.items():
      splits[split] = [pool[(start + i) % len(pool)] for i in range(n)]
      start += n
  os.makedirs(os.path.join(root, 'tok'), exist_ok=True)
  for split, sentences in splits.items():
    stem = SPLIT_STEMS[split]
    for lang in ('en', 'de', 'fr'):
      tok = sentences if lang == 'en' else [translate_words(s, lang) for s in sentences]
      with gzip.open(
          os.path.join(root, 'tok', f'{stem}.lc.norm.tok.{lang}.gz'), 'wt', encoding='utf-8'
      ) as f:
        f.writelines(s + '\n' for s in tok)
      with gzip.open(os.path.join(root, f'{stem}.{lang}.gz'), 'wt', encoding='utf-8') as f:
        f.writelines(detok(s) + '\n' for s in tok)
  return splits
