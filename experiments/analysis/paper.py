"""The paper's reference numbers: Vaswani et al. 2017, Table 3 (newstest2013 dev), read from
configs/ablations/vaswani2017_table3.json (data, written once there); the ablation report prints
them beside ours and `reference` picks the row to compare a variant with."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

from experiments.analysis import stats

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


# Table 3 prints BLEU with one decimal and PPL with two: a smaller difference is a tie.
RESOLUTION = {'bleu': 0.1, 'ppl': 0.01}


def axis_points(axis: str) -> list[tuple[object, str]]:
  """(value, row name) of the paper's rows of `axis`, its base at its base value ('base', 8 for
  heads); [] for an axis the paper does not vary."""
  if axis not in base_values():
    return []
  out = [(base_values()[axis], 'base')]
  for name in rows():
    head, _, label = name.partition('=')
    if head == axis and name != f'{axis}={base_values()[axis]}':  # heads=8 is the base again
      out.append((label_value(label), name))
  return out


def label_value(text: str) -> object:
  """A variant label as a number where it is one: '4' -> 4, '0.1' -> 0.1, 'learned' stays."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _numeric(*values: object) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _sign(x: float) -> int:
  return (x > 0) - (x < 0)


def reference(
    name: str, axis: str, value: object, base_value: object
) -> tuple[str, PaperRow] | None:
  """(row name, row) of the paper to compare our variant `name` (value `value` on an axis whose
  base is `base_value`) with, or None.

  Numeric axes match by value, never by name: the paper's rows on the same side of ITS base as
  ours is of our base, nearest in ratio (log(value / base) against log(paper value / paper
  base)) for positive axes and in difference (value − base) otherwise. Our N=4 against a base
  N=2 is deeper than its base: it goes with the paper's N=8 (deeper than the paper's N=6), not
  with the paper's N=4 (shallower). Categorical axes (positional=learned) match by name."""
  paper_base = base_values().get(axis)
  if not _numeric(value):
    return (name, rows()[name]) if name in rows() else None
  if not _numeric(base_value, paper_base) or value == base_value:
    return None
  side = _sign(value - base_value)
  ratio = value > 0 and base_value > 0 and paper_base > 0

  def distance(v: float) -> float:
    if ratio:
      return abs(math.log(value / base_value) - math.log(v / paper_base))
    return abs((value - base_value) - (v - paper_base))

  candidates = [
      (distance(v), abs(v - value), n)
      for v, n in axis_points(axis)
      if _numeric(v) and _sign(v - paper_base) == side and (not ratio or v > 0)
  ]
  if not candidates:
    return None
  n = min(candidates)[2]
  return n, rows()[n]


def delta(row: PaperRow, metric: str) -> float:
  """The paper's change of `metric` ('bleu' or 'ppl') from its base to `row`."""
  return getattr(row, metric) - getattr(rows()['base'], metric)


def is_tie(row: PaperRow, metric: str) -> bool:
  """|paper Δ| within the table's resolution (0.1 BLEU, 0.01 PPL)."""
  return abs(delta(row, metric)) <= RESOLUTION[metric] + 1e-9


def direction(ours: stats.Difference, row: PaperRow | None, metric: str) -> str:
  """Whether our change of the objective (`ours`, a variant against our base) has the sign of
  the paper's change of `metric` ('bleu' for maximised objectives, 'ppl' for minimised ones) for
  the row of `reference` (on the same side of its base, so the signs compare directly):
  'agrees', 'disagrees', 'tie' (the paper's change within its resolution), 'n.s.' (our 95%
  interval contains 0, or there is none: n = 1), '–' (no paper row)."""
  if row is None:
    return '–'
  if is_tie(row, metric):
    return 'tie'
  if not ours.excludes_zero():
    return 'n.s.'
  return 'agrees' if _sign(ours.delta) == _sign(delta(row, metric)) else 'disagrees'
