"""Moses-style text processing (sacremoses) for Multi30k's `tok` variant.

The `tok` files were made with the Moses scripts: lowercase, normalize-punctuation.perl,
tokenizer.perl (with XML escaping, e.g. "kid &apos;s"). `TokText(lang)` applies the same
steps to new input (the `translate` verb) and detokenizes model output for display and for
the detokenized BLEU of tok models.
"""

from __future__ import annotations

import functools


class TokText:
  """Lowercase + Moses punctuation normalization + Moses tokenization, and back."""

  def __init__(self, lang: str):
    from sacremoses import MosesDetokenizer, MosesPunctNormalizer, MosesTokenizer  # pylint: disable=g-import-not-at-top

    self.lang = lang
    self._normalizer = MosesPunctNormalizer(lang=lang)
    self._tokenizer = MosesTokenizer(lang=lang)
    self._detokenizer = MosesDetokenizer(lang=lang)

  def preprocess(self, text: str) -> str:
    """Raw text -> the dataset's lowercased tokenized form."""
    text = self._normalizer.normalize(text.lower())
    return self._tokenizer.tokenize(text, return_str=True, escape=True)

  def detokenize(self, text: str) -> str:
    """Tokenized text -> plain text (XML escapes undone, spaces before punctuation removed)."""
    return self._detokenizer.detokenize(text.split(), unescape=True)


@functools.lru_cache(maxsize=None)
def tok_text(lang: str) -> TokText:
  return TokText(lang)
