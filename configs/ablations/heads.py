"""Ablation: number of attention heads at fixed d_model (d_k = d_model / h), Vaswani et al. 2017
Table 3 (A), each value against one base model (h = 8), 3 seeds per point.

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/heads.py:mnist --workdir runs/ablations/heads_mnist
  python -m experiments.analysis.ablation_report --workdir runs/ablations/heads_mnist --out docs/ablations/heads_mnist

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/heads.py:mnist-tuned --workdir runs/ablations/heads_mnist-tuned
  python -m experiments.analysis.ablation_report --workdir runs/ablations/heads_mnist-tuned/compare --out docs/ablations/heads_mnist-tuned

Variants (the argument after ':'):
  mnist     CPU: MNIST classifier, d_model 64, 2 layers, 400 steps; heads 1, 2, 4, 8 (base), 16
  mnist-tuned  the same heads, tuned then compared (experiments/sweep/tune_compare.py): 16 tokens,
            up to 2,000 steps with early stopping; per variant the learning rate (1e-3, 3e-3,
            1e-2; seed 0) with the best validation accuracy, then 5 seeds at it
  multi30k  CPU: Multi30k en->de, d_model 128, 2+2 layers, 400 steps; heads 1, 2, 4, 8 (base), 16
  wmt14     paper: the base model on WMT14 (accelerators); heads 1, 4, 8 (base), 16, 32

Results: docs/ablations/ (the measured CPU variants, with their commands and wall times).
mnist-tuned, measured 2026-12-05 (one core of a 2-core AMD EPYC, load ~0.7-1.0; tune stage
28.6 min, compare stage 47.1 min of training): best validation accuracy, 5 seeds, h=1 0.9806,
h=2 0.9836, h=4 0.9848, h=8 (base) 0.9863, h=16 0.9862; only h=1 differs after Holm (Δ -0.0057
[-0.0082, -0.0033], Holm p 0.0034). Every run reached the 2,000-step cap.
"""

import ml_collections

from experiments.sweep import ablations

VALUES = {
    'mnist': (1, 2, 4, 8, 16),
    'mnist-tuned': (1, 2, 4, 8, 16),
    'multi30k': (1, 2, 4, 8, 16),
    'wmt14': (1, 4, 8, 16, 32),
}
TUNED_BASES = {'mnist-tuned': 'mnist-converged'}  # tuned variant -> its base (ablations.TUNED)


def get_config(arg: str = 'mnist') -> ml_collections.ConfigDict:
  if arg not in VALUES:
    raise ValueError(f'unknown variant {arg!r}; use configs/ablations/heads.py:{"|".join(VALUES)}')
  base_name = TUNED_BASES.get(arg, arg)
  points = ablations.heads_points(VALUES[arg], ablations.make_base(base_name).model.num_heads)
  if arg in TUNED_BASES:
    return ablations.tuned_sweep(base_name, points, name=f'heads_{arg}')
  return ablations.sweep(arg, points, name=f'heads_{arg}')
