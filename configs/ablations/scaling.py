"""Ablation: model size. Each axis varied alone from one base model, 3 seeds per point.

  multi30k  CPU, Table 3 (C) of Vaswani et al. 2017 on Multi30k en->de (base: N = 2+2 layers,
            d_model 128, 8 heads, d_ff 512): depth N 1, 4; width d_model 64, 256 (8 heads, so
            d_k scales as in the paper); FFN width d_ff 256, 1024
  wmt14     paper: Table 3 (C) around the base model on WMT14 (accelerators): N 2, 4, 8;
            d_model 256, 1024; d_ff 1024, 4096
  lm        CPU, decoder-only LM on Multi30k English: 6 sizes from ~12k to ~1.2M non-embedding
            parameters (d_ff = 4 d_model); the report fits L(N) = E + A N^-alpha

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/ablations/scaling.py:multi30k --workdir runs/ablations/scaling_multi30k
  python -m experiments.analysis.ablation_report --workdir runs/ablations/scaling_multi30k --out docs/ablations/scaling_multi30k

Results: docs/ablations/.
"""

from typing import Any

import ml_collections

from experiments.sweep import ablations

# Table 3 (C) values around each translation base (the base values themselves are 'base').
GRIDS = {
    'multi30k': {'N': (1, 4), 'd_model': (64, 256), 'd_ff': (256, 1024)},
    'wmt14': {'N': (2, 4, 8), 'd_model': (256, 1024), 'd_ff': (1024, 4096)},
}
# LM sizes: (d_model, layers, heads); d_ff = 4 d_model. Non-embedding ~ 12 d_model^2 layers.
LM_SIZES = ((32, 1, 2), (48, 2, 2), (64, 2, 4), (96, 3, 4), (160, 4, 4))
LM_BASE = (128, 3, 4)  # configs/lm_multi30k.py's model (d_ff 512)


def translation_points(grid: dict[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
  out: dict[str, dict[str, Any]] = {}
  for n in grid['N']:
    out[f'N={n}'] = {'model.num_encoder_layers': n, 'model.num_decoder_layers': n}
  for d in grid['d_model']:
    out[f'd_model={d}'] = {'model.d_model': d}
  for f in grid['d_ff']:
    out[f'd_ff={f}'] = {'model.d_ff': f}
  return out


def lm_points() -> dict[str, dict[str, Any]]:
  return {
      f'size=d{d}xL{n}': {
          'model.d_model': d,
          'model.num_layers': n,
          'model.num_heads': h,
          'model.d_ff': 4 * d,
      }
      for d, n, h in LM_SIZES
  }


def get_config(arg: str = 'multi30k') -> ml_collections.ConfigDict:
  if arg == 'lm':
    return ablations.sweep('lm', lm_points(), name='scaling_lm')
  if arg not in GRIDS:
    raise ValueError(f'unknown variant {arg!r}; use configs/ablations/scaling.py:multi30k|wmt14|lm')
  return ablations.sweep(arg, translation_points(GRIDS[arg]), name=f'scaling_{arg}')
