"""experiments/translation/bleu.py: sacrebleu plumbing on known strings."""

import collections
import logging
import math

import pytest

from experiments.translation import bleu


def _reference_bleu(hyps, refs):
  """Plain corpus BLEU-4 over whitespace tokens (Papineni et al. 2002), no smoothing."""
  matches, totals = [0] * 4, [0] * 4
  hyp_len = ref_len = 0
  for h, r in zip(hyps, refs):
    h, r = h.split(), r.split()
    hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
    for n in range(1, 5):
      hc = collections.Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
      rc = collections.Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
      matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
      totals[n - 1] += max(len(h) - n + 1, 0)
  log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
  bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
  return 100 * bp * math.exp(log_p)


HYPS = [
    'ein mann fährt mit einem fahrrad die straße entlang .',
    'zwei hunde spielen im schnee mit einem ball .',
    'eine frau mit einem roten hut sitzt auf einer bank .',
]
REFS = [
    'ein mann fährt auf einem fahrrad die straße entlang .',
    'zwei hunde spielen im schnee .',
    'eine frau mit rotem hut sitzt auf einer bank im park .',
]


def test_tokenized_bleu_matches_reference_formula():
  result = bleu.tokenized_bleu(HYPS, REFS)
  assert result.score == pytest.approx(_reference_bleu(HYPS, REFS), abs=1e-6)
  assert 'tok:none' in result.signature and 'tokenized' in result.kind
  assert bleu.tokenized_bleu(REFS, REFS).score == pytest.approx(100.0)
  assert bleu.tokenized_bleu(['x y z w'] * 3, REFS).score == pytest.approx(0.0)


def test_tokenized_bleu_does_not_warn_about_tokenized_text(caplog):
  """Tokenized text is what tokenized BLEU is for: no "forgot to detokenize" warning (sacrebleu
  warns after 100 lines ending in ' .'), same score as the formula."""
  hyps, refs = HYPS * 40, REFS * 40
  with caplog.at_level(logging.WARNING, logger='sacrebleu'):
    result = bleu.tokenized_bleu(hyps, refs)
  assert not [r for r in caplog.records if 'detokenize' in r.getMessage()]
  assert result.score == pytest.approx(_reference_bleu(hyps, refs), abs=1e-6)


def test_detokenized_bleu_tokenizes_and_handles_case():
  raw_refs = ['Ein Mann fährt auf einem Fahrrad die Straße entlang.']
  hyp = ['ein mann fährt auf einem fahrrad die straße entlang.']
  # 13a splits the final period; 'none' would see 'entlang.' as one token.
  cased = bleu.detokenized_bleu(hyp, raw_refs)
  lower = bleu.detokenized_bleu(hyp, raw_refs, lowercase=True)
  assert lower.score == pytest.approx(100.0)
  assert cased.score < 100.0 and 'case-insensitive' in lower.kind
  assert 'tok:13a' in lower.signature and 'case:lc' in lower.signature
  assert bleu.tokenized_bleu(hyp, [r.lower() for r in raw_refs]).score == pytest.approx(100.0)
  assert bleu.tokenized_bleu(['a b c d.'], ['a b c d .']).score < 100.0
  assert 'BLEU = 100.00' in str(lower)


def test_length_mismatch_is_an_error():
  with pytest.raises(ValueError, match='2 hypotheses but 3 references'):
    bleu.tokenized_bleu(HYPS[:2], REFS)
