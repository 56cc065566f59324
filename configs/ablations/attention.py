"""Ablation: the attention itself, each setting against one base model (scaled dot-product,
softmax, sinusoidal positions, dropout 0.1, label smoothing 0.1), 3 seeds per point:

  score      dot, general, additive, location (soft weighting) vs scaled_dot (base)
  weighting  (scaled dot) hard one-hot with straight-through gradient; local, window 1, 3, 8
  dropout / label_smoothing   0, 0.1, 0.2 (Table 3 (D) of Vaswani et al. 2017)
  positional learned, RoPE vs sinusoidal (Table 3 (E))

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/attention.py:mnist --workdir runs/ablations/attention_mnist
  python -m experiments.analysis.ablation_report --workdir runs/ablations/attention_mnist --out docs/ablations/attention_mnist

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/attention.py:mnist-table3-tuned --workdir runs/ablations/attention_mnist-table3-tuned
  python -m experiments.analysis.ablation_report --workdir runs/ablations/attention_mnist-table3-tuned/compare --out docs/ablations/attention_mnist-table3-tuned

The other tuned ablations on the same base take the base's runs from a finished one (--reuse,
experiments/sweep/twins.py), e.g.
  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/attention.py:mnist-score-tuned --workdir runs/ablations/attention_mnist-score-tuned --reuse runs/ablations/attention_mnist-table3-tuned
  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/attention.py:multi30k-table3-tuned --workdir runs/ablations/attention_multi30k-table3-tuned --reuse runs/ablations/heads_multi30k-tuned

Variants (the argument after ':'): `mnist` and `multi30k` (CPU bases of
experiments/sweep/ablations.py), `wmt14` (the paper's base model, accelerators); `DATA-score`
(score and weighting axes only) and `DATA-table3` (dropout, label smoothing, positions only)
split the sweep in two where CPU time is short. `DATA[-GROUP]-tuned` (DATA mnist or multi30k):
the same points tuned then compared (experiments/sweep/tune_compare.py) on the converged bases
of heads.py:DATA-tuned, e.g. `mnist-table3-tuned`: 7 variants x 3 learning rates (seed 0), then
5 seeds each at its rate (28 compare runs train; ~2.4 min a run on one core, an estimate from
heads.py:mnist-tuned's base); `multi30k-table3-tuned`: 21 tune runs, then 3 seeds (14 train;
18-23 min a run on one core at load ~2, measured in its tune stage); started 2026-12-07, its
unfinished sweep carried in docs/ablations/records/.
mnist-table3-tuned, measured 2026-12-06 (2-core Intel Xeon, two sweep workers pinned one per core,
load 1.9-3.3; tune stage 20:32-20:58 UTC, compare stage 20:59-21:34 UTC, 49.0 + 86.9 min of summed
training time, ~2.8 min a run): best validation accuracy, 5 seeds, base 0.9863 ± 0.0003, dropout
0 0.9869, dropout 0.2 0.9854, label smoothing 0 0.9862, 0.2 0.9856, learned positions 0.9855,
RoPE 0.9849; only RoPE differs after Holm (Δ -0.0014 [-0.0021, -0.0007], Holm p 0.020). Every run
reached the 2,000-step cap.
mnist-score-tuned, measured 2026-12-06/07 (2-core Intel Xeon, two sweep workers pinned one per
core; tune stage 21:35-22:14 UTC, compare stage 22:14-22:45 and 23:47-00:16 UTC, 79.2 + 144.3 min
of summed training time; 2 base tune runs and the base's seed 1-4 compare runs taken from
mnist-table3-tuned with --reuse): best validation accuracy, 5 seeds, base (scaled dot, soft)
0.9863 ± 0.0003, dot 0.9853, general 0.9848, additive 0.9859, location 0.9876, hard 0.9867,
local w=1 0.9844, w=3 0.9869, w=8 0.9870; only local w=1 differs after Holm (Δ -0.0019
[-0.0029, -0.0009], Holm p 0.033). Every run reached the 2,000-step cap.
Results: docs/ablations/.
"""

from typing import Any

import ml_collections

from experiments.sweep import ablations

SCORES = ('dot', 'general', 'additive', 'location')
WINDOWS = (1, 3, 8)


GROUPS = ('score', 'table3')  # score + weighting axes; the (D)/(E) rows of Table 3


def points(
    base: ml_collections.ConfigDict, groups: tuple[str, ...] = GROUPS
) -> dict[str, dict[str, Any]]:
  out: dict[str, dict[str, Any]] = {}
  if 'score' in groups:
    for score in SCORES:
      out[f'score={score}'] = {'model.attention.score': score}
    out['weighting=hard'] = {
        'model.attention.weighting': 'hard',
        'model.attention.straight_through': True,
    }
    for w in WINDOWS:
      out[f'weighting=local,w={w}'] = {
          'model.attention.weighting': 'local',
          'model.attention.window': w,
      }
  if 'table3' in groups:
    out.update(ablations.regularisation_points(base))
  return out


def get_config(arg: str = 'mnist') -> ml_collections.ConfigDict:
  untuned = arg.removesuffix('-tuned')
  data, _, group = untuned.partition('-')
  tuned = ablations.TUNED_VARIANTS.get(f'{data}-tuned') if untuned != arg else None
  if (
      data not in ('mnist', 'multi30k', 'wmt14')
      or group not in ('', *GROUPS)
      or (untuned != arg and tuned is None)
  ):
    raise ValueError(
        f'unknown variant {arg!r}; use configs/ablations/attention.py:DATA[-GROUP][-tuned] with '
        f'DATA mnist|multi30k|wmt14 (-tuned: mnist|multi30k) and GROUP {"|".join(GROUPS)} '
        '(default: both)'
    )
  groups = (group,) if group else GROUPS
  name = f'attention_{arg}'
  if tuned:
    return ablations.tuned_sweep(tuned, points(ablations.make_base(tuned), groups), name=name)
  return ablations.sweep(data, points(ablations.make_base(data), groups), name=name)
