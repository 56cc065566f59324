"""The paper's reference numbers: Vaswani et al. 2017, Table 3 (newstest2013 dev), read from
configs/ablations/vaswani2017_table3.json (data, written once there); the ablation report prints
them beside ours."""

from __future__ import annotations

import dataclasses
import functools
import json
import os

TABLE3_FILE = os.path.join(
    os.path.dirname(__file__), '..', '..', 'configs', 'ablations', 'vaswani2017_table3.json'
)


@dataclasses.dataclass(frozen=True)
class PaperRow:
  """One row of Table 3 (base model: 4.92 / 25.8)."""

  ppl: float  # per-wordpiece perplexity
  bleu: float  # BLEU
  params_m: float | None = None  # parameters x 10^6 (when the row lists them)


@functools.lru_cache(maxsize=None)
def _table3() -> dict:
  with open(TABLE3_FILE, encoding='utf-8') as f:
    return json.load(f)


def rows() -> dict[str, PaperRow]:
  """Variant name ('heads=16', 'N=2', ...) -> its row; 'base' is the paper's base model (h=8,
  N=6, d_model 512, d_ff 2048, P_drop 0.1, eps_ls 0.1, sinusoidal positions)."""
  return {name: PaperRow(**row) for name, row in _table3()['rows'].items()}


def base_values() -> dict[str, object]:
  """The paper's base values of the axes of Table 3 ('heads': 8, 'N': 6, ...)."""
  return dict(_table3()['base_values'])
