"""Ablation: the architecture. The Transformer of configs/translation_multi30k.py against its
recurrent baseline `:rnn` (Bahdanau et al. 2015: bidirectional GRU encoder, GRU decoder with
additive attention, 1.0% fewer parameters), with the same data, vocabulary, schedule (3,000
steps), decoding and BLEU, 3 seeds each (issue 22 section 1).

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/architecture.py:multi30k --workdir runs/ablations/architecture_multi30k
  python -m experiments.analysis.ablation_report --workdir runs/ablations/architecture_multi30k --out docs/ablations/architecture_multi30k

The report gives, per model, the best greedy validation BLEU (steps 1,000 / 2,000 / 3,000), the
beam-4 test BLEU, steps/s and wall time per run, and the Welch interval of the difference, with
learning curves.

Result: not run as a sweep yet (six runs; on one CPU core seed 0 took 2h00m for the Transformer
and 1h22m36s for the RNN). Seed 0 of each, run with the single-run configs: test_2016 tokenized
BLEU 39.18 (Transformer) and 35.47 (RNN), docs/ablations/rnn_vs_transformer.md.
"""

from typing import Any

import ml_collections

from experiments.sweep import ablations, spec

CONFIG = 'configs/translation_multi30k.py'


def _flat(d: dict[str, Any], prefix: str) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for k, v in d.items():
    out.update(_flat(v, f'{prefix}{k}.') if isinstance(v, dict) else {f'{prefix}{k}': v})
  return out


def rnn_point() -> dict[str, Any]:
  """The model fields in which CONFIG's `:rnn` variant differs from its default: the variant is
  defined once, in CONFIG."""
  default = _flat(spec.load_config_file(CONFIG).model.to_dict(), 'model.')
  rnn = _flat(spec.load_config_file(f'{CONFIG}:rnn').model.to_dict(), 'model.')
  return {k: v for k, v in rnn.items() if default[k] != v}


def get_config(arg: str = 'multi30k') -> ml_collections.ConfigDict:
  if arg != 'multi30k':
    raise ValueError(f'unknown variant {arg!r}; use configs/ablations/architecture.py:multi30k')
  return ablations.sweep(
      'multi30k-full', {'architecture=rnn': rnn_point()}, 'architecture_multi30k'
  )
