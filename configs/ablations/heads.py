"""Ablation: number of attention heads at fixed d_model (d_k = d_model / h), Vaswani et al. 2017
Table 3 (A), each value against one base model (h = 8), 3 seeds per point.

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/heads.py:mnist --workdir runs/ablations/heads_mnist
  python -m experiments.analysis.ablation_report --workdir runs/ablations/heads_mnist --out docs/ablations/heads_mnist

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/heads.py:mnist-tuned --workdir runs/ablations/heads_mnist-tuned
  python -m experiments.analysis.ablation_report --workdir runs/ablations/heads_mnist-tuned/compare --out docs/ablations/heads_mnist-tuned

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/heads.py:multi30k-tuned --workdir runs/ablations/heads_multi30k-tuned
  python -m experiments.analysis.ablation_report --workdir runs/ablations/heads_multi30k-tuned/compare --out docs/ablations/heads_multi30k-tuned

Variants (the argument after ':'):
  mnist     CPU: MNIST classifier, d_model 64, 2 layers, 400 steps; heads 1, 2, 4, 8 (base), 16
  mnist-tuned  the same heads, tuned then compared (experiments/sweep/tune_compare.py): 16 tokens,
            up to 2,000 steps with early stopping; per variant the learning rate (1e-3, 3e-3,
            1e-2; seed 0) with the best validation accuracy, then 5 seeds at it
  multi30k  CPU: Multi30k en->de, d_model 128, 2+2 layers, 400 steps; heads 1, 2, 4, 8 (base), 16
  multi30k-tuned  the same heads on Multi30k, tuned then compared: the multi30k base trained to
            the end of a 1,500-step cosine schedule (validation loss every 100 steps, early
            stopping, greedy validation BLEU every 500); per variant the learning rate (2e-3,
            5e-3, 1e-2; seed 0) with the best validation BLEU, then 3 seeds at it (15 tune runs
            + 15 compare runs, 10 of them trained, 16-19 min each on one core)
  wmt14     paper: the base model on WMT14 (accelerators); heads 1, 4, 8 (base), 16, 32

Results: docs/ablations/ (the measured CPU variants, with their commands and wall times).
mnist-tuned, measured 2026-12-05 (one core of a 2-core AMD EPYC, load ~0.7-1.0; tune stage
28.6 min, compare stage 47.1 min of training): best validation accuracy, 5 seeds, h=1 0.9806,
h=2 0.9836, h=4 0.9848, h=8 (base) 0.9863, h=16 0.9862; only h=1 differs after Holm (Δ -0.0057
[-0.0082, -0.0033], Holm p 0.0034). Every run reached the 2,000-step cap.
multi30k-tuned, measured 2026-12-07 (2-core Intel Xeon, two sweep workers pinned one per core,
load 2.0-3.3; compare stage 03:39-05:07 UTC): every variant chose 5e-3; best greedy validation
BLEU, 3 seeds, h=1 31.74, h=2 31.90, h=4 32.05, h=8 (base) 31.40, h=16 31.04; no variant differs
from the base (Holm p 1 for all four; h=1 +0.35 [-0.42, +1.11], h=16 -0.35 [-1.18, +0.47]).
Every run reached the 1,500-step cap.
multi30k-tuned's base, measured 2026-12-05 (seed 0 at 5e-3: run.py train with a config equal to
the base's, pinned to one core of the 2-core Intel Xeon beside a 1+1-layer run on the other, load
average 1.9 at the start, 1.0 at the end): 17m08s wall, 1.4-1.8 steps/s; greedy validation BLEU
20.16 / 29.49 / 31.79 at steps 500 / 1,000 / 1,500, test_2016 (greedy) 31.96; validation loss
2.894 / 2.892 / 2.890 at steps 1,300 / 1,400 / 1,500: flat at the end of the schedule as the rate
decays (a 2,000-step schedule reached 2.78 by step 1,800 in an earlier probe, so this is the end
of the schedule, not the model's limit). With 1+1 layers: 13m15s, validation BLEU 30.56, test 30.63.
The command (core 1; the 1+1-layer run: core 0, both layer counts 1):
  TRANSFORMER_DATA_DIR=../shared/data taskset -c 1 python run.py train --config configs/translation_multi30k.py --workdir runs/probe_L2 --config.num_train_steps=1500 --config.warmup_steps=150 --config.data.tokens_per_batch=2048 --config.model.d_model=128 --config.model.num_heads=8 --config.model.d_ff=512 --config.model.dropout_rate=0.1 --config.eval_loss_every_steps=100 --config.early_stopping_patience=3 --config.early_stopping_min_delta=0.002 --config.eval_every_steps=500 --config.checkpoint_every_steps=500 --config.keep_checkpoints=1 --config.decoding.beam_size=1 --config.final_test_splits=test_2016 --config.log_every_steps=100 --config.model.num_encoder_layers=2 --config.model.num_decoder_layers=2
"""

import ml_collections

from experiments.sweep import ablations

VALUES = {
    'mnist': (1, 2, 4, 8, 16),
    'mnist-tuned': (1, 2, 4, 8, 16),
    'multi30k': (1, 2, 4, 8, 16),
    'multi30k-tuned': (1, 2, 4, 8, 16),
    'wmt14': (1, 4, 8, 16, 32),
}


def get_config(arg: str = 'mnist') -> ml_collections.ConfigDict:
  if arg not in VALUES:
    raise ValueError(f'unknown variant {arg!r}; use configs/ablations/heads.py:{"|".join(VALUES)}')
  base_name = ablations.TUNED_VARIANTS.get(arg, arg)
  points = ablations.heads_points(VALUES[arg], ablations.make_base(base_name).model.num_heads)
  if arg in ablations.TUNED_VARIANTS:
    return ablations.tuned_sweep(base_name, points, name=f'heads_{arg}')
  return ablations.sweep(arg, points, name=f'heads_{arg}')
