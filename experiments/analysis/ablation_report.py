"""The report of an ablation sweep (a sweep over named variants, configs/ablations/*.py).

`run.py report --workdir DIR` writes it next to report.md as DIR/ablation.md + DIR/plots/; to
write it elsewhere (docs/ablations/NAME/) run

  python -m experiments.analysis.ablation_report --workdir DIR --out docs/ablations/NAME

Per axis (the part of a variant name before '='; 'base' belongs to every axis) a table of n
(complete runs), mean ± std over seeds of the objective, the final test metrics and training
loss, parameters, steps/s and wall time; per variant its Δ from the base with a 95% Welch t
interval, the Welch p and the Holm-adjusted p over all variants of the report (stats.py),
'beyond spread' = adjusted p < 0.05; beside Vaswani et al. 2017 Table 3
(configs/ablations/vaswani2017_table3.json), the paper's row on the same side of its base
matched by value (paper.reference), and whether our Δ has the paper's direction (agrees /
disagrees / tie / n.s.). Plots (ablation_plots.py): objective vs each axis, learning curves
per seed, attention of the same input per variant side by side, and for size axes the power-law fit
L(N) = E + A N^-alpha of the validation loss (experiments/analysis/scaling_laws.py) over non-embedding and
total parameters. Then the steps and wall time each variant needs to reach the weakest run's best
objective (time_to_target.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from experiments.core import metric_logging
from experiments.analysis import ablation_plots
from experiments.analysis import paper as paper_lib
from experiments.analysis import stats as stats_lib
from experiments.analysis import scaling_report, time_to_target, tuning_report
from experiments.analysis.results import load_sweep, state_counts, trial_rows
from experiments.sweep import tune_compare, variants
from experiments.core.task import RunError

REPORT_FILE = 'ablation.md'
SHOWN_METRICS = ('accuracy', 'bleu', 'perplexity')  # final test metrics in the tables
SIZE_AXES = ('size', 'N', 'd_model', 'd_ff')  # axes whose points enter the scaling fit


def is_ablation(record: dict[str, Any]) -> bool:
  return 'variants' in record['identity']


def _get(config: dict[str, Any], dotted: str) -> Any:
  node = config
  for part in dotted.split('.'):
    node = node.get(part) if isinstance(node, dict) else None
  return node


def axes(ident: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """axis -> {'base_value': the base experiment's value, 'variants': [(name, value)], 'keys':
  {name: the values of the fields its variants set, base included, when all are numbers}}."""
  out: dict[str, dict[str, Any]] = {}
  import json  # pylint: disable=g-import-not-at-top

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


def _paper_points(axis: str, info: dict[str, Any], metric: str) -> list[tuple[Any, float, str]]:
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


def _span(counts: list[int]) -> str:
  """'3', '2 to 3' or '0'."""
  if not counts:
    return '0'
  low, high = min(counts), max(counts)
  return str(low) if low == high else f'{low} to {high}'


def seed_zero(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """The run of the lowest seed (seed = base seed + 0) among a variant's complete runs."""
  return min(rows, key=lambda r: (r.get('seed') is None, r.get('seed') or 0))


def _command(name: str, workdir: str, out: str) -> list[str]:
  staged = tuning_report.staged_workdir(workdir, name)  # a tuned ablation: both stages, one command
  if staged:
    name = name.removesuffix(tune_compare.TUNE_SUFFIX)  # the tune stage's study: the ablation's
  kind, _, arg = name.partition('_')
  return [
      f'TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config '
      f'configs/ablations/{kind}.py:{arg} --workdir {staged or workdir}',
      f'python -m experiments.analysis.ablation_report --workdir {workdir} --out {out}',
  ]


def write(workdir: str, study, record: dict[str, Any], rows, out: str | None = None) -> list[str]:
  """Writes OUT/ablation.md and OUT/plots/ablation_*.png (OUT = workdir by default)."""
  out = out or workdir
  plot_dir = os.path.join(out, 'plots')
  os.makedirs(plot_dir, exist_ok=True)
  ident = record['identity']
  objective, task = ident['objective'], ident['base'].get('task')
  ppl = ident['direction'] == 'minimize'
  groups = group(rows)
  trials = study.get_trials(deepcopy=False)
  starts = [t.datetime_start for t in trials if t.datetime_start]
  ends = [t.datetime_complete for t in trials if t.datetime_complete]
  walls = [r['wall_s'] for r in rows if isinstance(r.get('wall_s'), (int, float))]
  axis_infos = axes(ident)
  in_axis_order = [n for info in axis_infos.values() for n, _ in table_order(info)]
  tests = comparisons(groups, in_axis_order)
  counts = [len(g['objective']) for g in groups.values()]
  lines = [f"# Ablation `{record['study_name']}`", '']
  if tune_compare.RATE in ident['space']:
    lines += [
        '**A tune stage**: the runs of a variant differ in learning rate, not only in seed, so '
        'its n, spread and tests below are not a comparison of the variants; the comparison is '
        f'the compare stage ({tune_compare.COMPARE_DIR}/ next to this sweep).',
        '',
    ]
  lines += [
      'Regenerate (the sweep resumes; the report reads its study and trial directories):',
      '',
      '```',
      *_command(record['study_name'], workdir, out),
      '```',
      '',
      f"- base experiment: task `{task}`, {ident['base'].get('num_train_steps')} steps, "
      f"{ident['seeds']} seeds per variant (seed = base seed + 0, 1, ...)",
      f'- objective: `{objective}` ({ident["direction"]}; best value over the evaluations)',
      f"- runs: {len(rows)} of {record['total_runs']} ({state_counts(rows)}); complete runs "
      f'per variant: n = {_span(counts)}',
  ]
  if walls:
    lines.append(f'- training wall time: {sum(walls) / 60:.1f} min summed over runs')
  if starts and ends:
    lines.append(f'- sweep span: {min(starts):%Y-%m-%d %H:%M} -> {max(ends):%H:%M} UTC')
  lines += [
      '',
      'Paper: Vaswani et al. 2017, Table 3 (WMT14 en-de, newstest2013; PPL per wordpiece, BLEU), '
      'base model 4.92 / 25.8. Rows are matched by value, not by name: a variant is compared '
      "with the paper's row on the same side of the paper's base as ours is of our base, the "
      'nearest in ratio to the base (a paper cell with a row name in brackets). '
      f"'paper direction': our Δ has the sign of the paper's change of {'PPL' if ppl else 'BLEU'}"
      " ('agrees' / 'disagrees'); 'tie' when the paper's change is within its resolution (0.1 "
      "BLEU, 0.01 PPL); 'n.s.' when our 95% interval contains 0.",
      '',
      f'Statistics: n = complete runs (seeds) per variant; Δ = variant mean − base mean of '
      f'`{objective}` with its 95% Welch t interval (Welch–Satterthwaite degrees of freedom) and '
      f'the two-sided Welch p; Holm p = p adjusted by Holm over the '
      f'{sum(1 for d, _ in tests.values() if d.has_interval)} comparisons of this report (all '
      f"axes together); 'beyond spread' = Holm p < {stats_lib.ALPHA}. With n = 1 on either side "
      'there is no interval and no p.',
  ]
  paths = []
  for axis, info in axis_infos.items():
    lines += ['', f'## {axis}', '']
    lines += axis_table(axis, info, groups, objective, ppl, tests)
    names = [n for n, _ in table_order(info)]
    points = [(v, n, groups[n]['objective']) for n, v in table_order(info) if n in groups]
    if not points:  # a sweep stopped before any run of this axis finished
      lines += ['', 'No plots: no run of this axis is complete yet.']
      continue
    paper = _paper_points(axis, info, 'ppl' if ppl else 'bleu')
    safe = axis.replace('/', '_')
    made = [
        ablation_plots.axis_plot(
            axis,
            points,
            objective,
            os.path.join(plot_dir, f'ablation_{safe}.png'),
            paper=paper,
            paper_metric='PPL' if ppl else 'BLEU',
        ),
        ablation_plots.curves_plot(
            axis,
            {n: [r['workdir'] for r in groups[n]['rows']] for n in names if n in groups},
            objective,
            os.path.join(plot_dir, f'ablation_curves_{safe}.png'),
        ),
    ]
    lines += ['']
    lines += [f'![{os.path.basename(p)}](plots/{os.path.basename(p)})' for p in made]
    paths += made
  order = [n for n in dict.fromkeys(in_axis_order) if n in groups] + [
      n for n in groups if n not in in_axis_order
  ]  # the tables' order, not the order the trials ran in
  ordered = {n: groups[n] for n in order}
  lines += tuning_report.section(workdir, record, ordered)  # rates chosen, where runs stopped
  lines += time_to_target.section(ordered, objective, maximize=not ppl)
  size_names = [n for n in groups if variants.axis(n) in SIZE_AXES]
  if size_names:
    lines += ['', '## Scaling: L(N) = E + A N^-α and (N_c / N)^α', '']
    more, made = scaling_report.scaling_section(
        [variants.BASE, *size_names], groups, task, os.path.join(plot_dir, 'ablation_scaling.png')
    )
    lines += more + [''] + [f'![scaling](plots/{os.path.basename(p)})' for p in made]
    paths += made
  first = {n: seed_zero(groups[n]['rows'])['workdir'] for n in order}
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top

  try:
    heat = ablation_plots.attention_grid(first, os.path.join(plot_dir, 'ablation_attention.png'))
  except checkpointing.CheckpointNotFoundError as e:  # carried without checkpoints or views
    heat = None
    lines += [
        '',
        f'No attention grid: a seed-0 run has neither a checkpoint nor an attention view here ({e}).',
    ]
  if heat:
    lines += [
        '',
        '## Attention of the same input per variant',
        '',
        '![attention](plots/' + os.path.basename(heat) + ')',
    ]
    paths.append(heat)
  path = os.path.join(out, REPORT_FILE)
  with open(path + '.tmp', 'w') as f:
    f.write('\n'.join(lines) + '\n')
  os.replace(path + '.tmp', path)
  return [path, *paths]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True, help='directory of `run.py sweep`')
  parser.add_argument('--out', default='', help='where ablation.md and plots/ go (default DIR)')
  parser.add_argument('--storage', default='', help='Optuna storage URL if not the journal file')
  args = parser.parse_args(argv)
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  from experiments.sweep import storage  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  url = storage.storage_url(args.storage)
  try:
    study, record = load_sweep(args.workdir, url)
    if not is_ablation(record):
      raise RunError(f'{args.workdir} is a sweep without variants, not an ablation')
    paths = write(
        args.workdir,
        study,
        record,
        trial_rows(study, record, args.workdir),
        args.out or None,
    )
  except RunError as e:
    sys.stderr.write(f'ablation_report: error: {e}\n')
    return 1
  print(f'Report: {paths[0]}\nPlots:  ' + ', '.join(paths[1:]))
  return 0


if __name__ == '__main__':
  sys.exit(main())
