"""The tables of an ablation report: one row per variant of an axis, and its test against the base.

A sweep's complete runs are grouped by variant (`group`: objective, final test metrics, training
loss); `comparisons` tests every variant against the base (Welch Δ with its 95% interval and p,
Holm-adjusted over the report, stats.py); `axis_table` writes one axis's Markdown table in
`table_order` (sorted by value when the axis is numeric), with Vaswani et al. 2017 Table 3's row on
the same side of the base (paper.py) and whether our Δ has its direction. `paper_points` are the
paper's rows at their own x for the axis plot (ablation_plots.py). ablation_report.py writes the
document around them.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from experiments.analysis import paper as paper_lib
from experiments.analysis import stats as stats_lib
from experiments.core import metric_logging
from experiments.sweep import tune_compare, variants

SHOWN_METRICS = ('accuracy', 'bleu', 'perplexity')  # final test metrics in the tables


def _get(config: dict[str, Any], dotted: str) -> Any:
  node = config
  for part in dotted.split('.'):
    node = node.get(part) if isinstance(node, dict) else None
  return node


def axes(ident: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """axis -> {'base_value': the base experiment's value, 'variants': [(name, value)], 'keys':
  {name: the values of the fields its variants set, base included, when all are numbers}}."""
  out: dict[str, dict[str, Any]] = {}

  for name, overrides in json.loads(ident['variants']):
    if name == variants.BASE:
      continue
    entry = out.setdefault(variants.axis(name), {'base_value': None, 'variants': [], 'fields': {}})
    value = paper_lib.label_value(variants.label(name))
    entry['variants'].append((name, value))
    entry['fields'][name] = {f: v for f, v in overrides.items() if f != tune_compare.RATE}
    axis_fields = [f for f in overrides if f != tune_compare.RATE]  # not the rate a tune chose
    if entry['base_value'] is None and axis_fields:
      fields = sorted(axis_fields, key=lambda f: f.rsplit('.', 1)[-1] != variants.axis(name))
      base_value = _get(ident['base'], fields[0])  # the field named like the axis, if any
      entry['base_value'] = base_value if isinstance(value, type(base_value)) else 'base'
  for entry in out.values():
    entry['keys'] = _numeric_keys(entry.pop('fields'), ident['base'])
  return out


def _numeric_keys(fields: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, tuple]:
  """{variant: the values of the fields the axis's variants set, in the order the sweep's
  record lists them (sweep.json: alphabetical, e.g. d_ff before d_model)} with the base's own
  values as 'base'; {} unless every variant sets the same fields and every value (the base's
  too) is a number."""
  if len({frozenset(f) for f in fields.values()}) != 1:
    return {}
  order = list(next(iter(fields.values())))
  keys = {n: tuple(f[k] for k in order) for n, f in fields.items()}
  keys[variants.BASE] = tuple(_get(base, k) for k in order)
  numbers = all(_is_number(v) for key in keys.values() for v in key)
  return keys if numbers and order else {}


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _final_metrics(workdir: str) -> dict[str, float]:
  """Final test metrics ('test_2016/bleu', ...) and the last training loss of a trial."""
  history = metric_logging.read_history(workdir)  # [] without a metrics file
  out: dict[str, float] = {}
  for h in history:
    if 'checkpoint' in h:
      continue  # lines of `run.py eval`
    for k, v in h.items():
      prefix, _, metric = k.partition('/')
      if isinstance(v, (int, float)) and (
          k == 'train/loss' or (prefix not in ('train', 'eval') and metric in SHOWN_METRICS)
      ):
        out[k] = float(v)
  return out


def _mean_std(values: list[float]) -> tuple[float, float]:
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pm(values: list[float], digits: int = 4) -> str:
  if not values:
    return '–'
  mean, std = _mean_std(values)
  return f'{mean:.{digits}g} ± {std:.2g}' if len(values) > 1 else f'{mean:.{digits}g}'


def group(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """variant -> {'objective': [...], 'metrics': {name: [...]}, 'rows': [...]} (complete runs)."""
  out: dict[str, dict[str, Any]] = {}
  for r in rows:
    if r['objective'] is None:
      continue
    g = out.setdefault(r['values'][variants.FIELD], {'objective': [], 'metrics': {}, 'rows': []})
    g['objective'].append(r['objective'])
    g['rows'].append(r)
    for k, v in _final_metrics(r['workdir']).items():
      g['metrics'].setdefault(k, []).append(v)
  return out


def comparisons(
    groups: dict[str, dict[str, Any]], names: list[str]
) -> dict[str, tuple[stats_lib.Difference, float]]:
  """variant -> (its objective against the base's: Δ, Welch interval and p; its Holm-adjusted
  p). The Holm family is every variant of `names` with complete runs: one report's rows
  together, across its axes (a comparison with n = 1 has no p and is not counted)."""
  base = groups.get(variants.BASE)
  if base is None:
    return {}
  diffs = {
      n: stats_lib.welch(groups[n]['objective'], base['objective'])
      for n in dict.fromkeys(names)
      if n != variants.BASE and n in groups
  }
  adjusted = stats_lib.holm([d.p for d in diffs.values()])
  return {n: (d, a) for (n, d), a in zip(diffs.items(), adjusted)}


def _comparison_cells(d: stats_lib.Difference, adjusted: float) -> list[str]:
  """'Δ [95% interval]', 'p', 'Holm p', 'beyond spread' of one variant."""
  if not d.has_interval:
    return [f'{d.delta:+.3g} (n={min(d.n, d.n_base)}: no interval)', '–', '–', '–']
  beyond = 'yes' if adjusted < stats_lib.ALPHA else 'no'
  return [
      f'{d.delta:+.3g} [{d.low:+.3g}, {d.high:+.3g}]',
      f'{d.p:.2g}',
      f'{adjusted:.2g}',
      beyond,
  ]


def _num(r: dict[str, Any], key: str) -> float | None:
  v = r.get(key)
  return float(v) if isinstance(v, (int, float)) else None


def table_order(info: dict[str, Any]) -> list[tuple[str, Any]]:
  """(name, value) of one axis's rows, the base among them: sorted by value when numeric; a
  categorical axis whose variants set numbers (the LM's sizes 'd16xL1', ...: d_model, layers,
  ...) sorted by those, the first field first; else the config's order."""
  entries = [(variants.BASE, info['base_value'])] + info['variants']
  keys = info.get('keys') or {}
  if all(isinstance(v, (int, float)) for _, v in entries):
    entries.sort(key=lambda e: e[1])
  elif all(n in keys for n, _ in entries):
    entries.sort(key=lambda e: keys[e[0]])
  return entries


def axis_table(
    axis: str,
    info: dict[str, Any],
    groups: dict[str, dict[str, Any]],
    objective: str,
    ppl: bool,
    tests: dict[str, tuple[stats_lib.Difference, float]],
) -> list[str]:
  """Markdown lines of one axis's table; `tests`: `comparisons` over the whole report."""
  metrics = sorted({k for g in groups.values() for k in g['metrics'] if k != 'train/loss'})
  paper_metric = 'ppl' if ppl else 'bleu'
  head = ['variant', 'n', f'{objective} (mean ± std)', *metrics, 'final train loss', 'params']
  head += ['steps/s', 'wall s / run', 'paper PPL', 'paper BLEU', 'Δ vs base [95% interval]']
  head += ['p', 'Holm p', 'beyond spread', 'paper direction']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for name, value in table_order(info):
    g = groups.get(name)
    shown = f'{value} (base)' if name == variants.BASE else str(value)
    if g is None:
      lines.append('| ' + ' | '.join([shown, '0'] + ['not run'] + [''] * (len(head) - 3)) + ' |')
      continue
    if name != variants.BASE:
      ref = paper_lib.reference(name, axis, value, info['base_value'])
    elif axis in paper_lib.base_values():  # an axis of Table 3: its base row
      ref = ('base', paper_lib.rows()['base'])
    else:  # e.g. the LM's sizes or the score function: the paper has no such row
      ref = None
    paper_cells = ['–', '–']
    if ref is not None:
      note = '' if ref[0] == name or name == variants.BASE else f' ({ref[0]})'
      paper_cells = [f'{ref[1].ppl}{note}', f'{ref[1].bleu}{note}']
    compared = ['', '', '', '', '']
    if name in tests:
      d, adjusted = tests[name]
      direction = paper_lib.direction(d, ref and ref[1], paper_metric)
      if ref is not None:
        direction += f' (paper {paper_lib.delta(ref[1], paper_metric):+.2g})'
      compared = [*_comparison_cells(d, adjusted), direction]
    rows = g['rows']
    params = {r['num_params'] for r in rows if r['num_params']}
    cells = [shown, str(len(g['objective'])), _pm(g['objective'])]
    cells += [_pm(g['metrics'].get(m, [])) for m in metrics]
    cells += [_pm(g['metrics'].get('train/loss', []))]
    cells += [', '.join(f'{p:,}' for p in sorted(params)) or '–']
    cells += [_pm([x for r in rows if (x := _num(r, 'steps_per_s')) is not None], 3)]
    cells += [_pm([x for r in rows if (x := _num(r, 'wall_s')) is not None], 3)]
    cells += [*paper_cells, *compared]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def paper_points(axis: str, info: dict[str, Any], metric: str) -> list[tuple[Any, float, str]]:
  """(x, paper `metric`, row name) of the paper's rows of `axis` for its plot: at the paper's own
  values on a numeric axis; on a categorical one at our category of the same name (the paper's
  base at ours)."""
  numeric = all(
      isinstance(v, (int, float)) for _, v in [(None, info['base_value'])] + info['variants']
  )
  ours = {v for _, v in info['variants']}
  out = []
  for value, name in paper_lib.axis_points(axis):
    x = info['base_value'] if name == 'base' and not numeric else value
    if numeric or x in ours or name == 'base':
      out.append((x, getattr(paper_lib.rows()[name], metric), name))
  return out
