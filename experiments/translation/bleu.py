"""Corpus BLEU with sacrebleu; which BLEU it is travels with the number.

- `tokenized_bleu`: BLEU over the given tokens (sacrebleu tokenize='none'), like
  multi-bleu.perl. On Multi30k's `tok` text (lowercased, Moses-tokenized) this is the
  number the Multi30k literature reports.
- `detokenized_bleu`: standard sacreBLEU (tokenize='13a') of detokenized output against
  raw references; `lowercase=True` for models that only produce lowercase (tok models).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sacrebleu


@dataclasses.dataclass(frozen=True)
class BleuResult:
  score: float  # 0-100
  kind: str  # human description of what was computed
  signature: str  # sacrebleu signature

  def __str__(self) -> str:
    return f'BLEU = {self.score:.2f}  [{self.kind}; sacrebleu {self.signature}]'


def _score(
    hypotheses: Sequence[str], references: Sequence[str], kind: str, **options
) -> BleuResult:
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} references')
  metric = sacrebleu.metrics.BLEU(**options)
  result = metric.corpus_score(list(hypotheses), [list(references)])
  return BleuResult(score=float(result.score), kind=kind, signature=str(metric.get_signature()))


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> BleuResult:
  """BLEU over whitespace tokens of already tokenized text (no further tokenization).

  force=True: the text is tokenized on purpose; it silences sacrebleu's "forgot to detokenize"
  warning (same score and signature)."""
  return _score(
      hypotheses, references, 'tokenized BLEU on tokenized text', tokenize='none', force=True
  )


def detokenized_bleu(
    hypotheses: Sequence[str], references: Sequence[str], *, lowercase: bool = False
) -> BleuResult:
  """sacreBLEU (13a tokenizer) of detokenized hypotheses against raw references."""
  kind = 'detokenized sacreBLEU vs raw references' + (', case-insensitive' if lowercase else '')
  return _score(hypotheses, references, kind, tokenize='13a', lowercase=lowercase)
