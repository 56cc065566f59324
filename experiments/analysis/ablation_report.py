"""The report of an ablation sweep (a sweep over named variants, configs/ablations/*.py).

`run.py report --workdir DIR` writes it next to report.md as DIR/ablation.md + DIR/plots/; to
write it elsewhere (docs/ablations/NAME/) run

  python -m experiments.analysis.ablation_report --workdir DIR --out docs/ablations/NAME

The document, top to bottom: how to regenerate it and what was run; per axis (the part of a
variant name before '='; 'base' belongs to every axis) its table (ablation_table.py: n, mean ±
std over seeds of the objective, final test metrics, training loss, parameters, steps/s, wall
time, Δ from the base with a 95% Welch interval, Welch p and Holm p over the report, and the
direction of Vaswani et al. 2017 Table 3's row on the same side of the base) and its plots
(ablation_plots.py: objective vs the axis with the paper's rows at their own x, learning curves
per seed); the rates a tune stage chose and where runs stopped (tuning_report.py); the steps and
wall time each variant needs to reach the weakest run's best objective (time_to_target.py); for
size axes the fits L(N) = E + A N^-α and (N_c / N)^α (scaling_report.py); the attention of the
same input per variant side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from experiments.analysis import ablation_plots
from experiments.analysis import ablation_table as table_lib
from experiments.analysis import stats as stats_lib
from experiments.analysis import scaling_report, time_to_target, tuning_report
from experiments.analysis.results import load_sweep, state_counts, trial_rows
from experiments.sweep import tune_compare, twins, variants
from experiments.core.task import RunError

REPORT_FILE = 'ablation.md'
SIZE_AXES = ('size', 'N', 'd_model', 'd_ff')  # axes whose points enter the scaling fit


def is_ablation(record: dict[str, Any]) -> bool:
  return 'variants' in record['identity']


def _span(counts: list[int]) -> str:
  """'3', '2 to 3' or '0'."""
  if not counts:
    return '0'
  low, high = min(counts), max(counts)
  return str(low) if low == high else f'{low} to {high}'


def seed_zero(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """The run of the lowest seed (seed = base seed + 0) among a variant's complete runs."""
  return min(rows, key=lambda r: (r.get('seed') is None, r.get('seed') or 0))


def _command(name: str, workdir: str, out: str, trials) -> list[str]:
  """The commands that ran the sweep (with the --reuse its runs came through) and the report."""
  staged = tuning_report.staged_workdir(workdir, name)  # a tuned ablation: both stages, one command
  if staged:
    name = name.removesuffix(tune_compare.TUNE_SUFFIX)  # the tune stage's study: the ablation's
    tune_dir = tune_compare.tune_dir_of(workdir)  # None when workdir is the tune stage itself
    if tune_dir:
      trials = [*load_sweep(tune_dir, None)[0].get_trials(deepcopy=False), *trials]
  kind, _, arg = name.partition('_')
  reuse = twins.reuse_dirs(trials, staged or workdir)
  return [
      f'TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config '
      f'configs/ablations/{kind}.py:{arg} --workdir {staged or workdir}'
      + (f' --reuse {",".join(reuse)}' if reuse else ''),
      f'python -m experiments.analysis.ablation_report --workdir {workdir} --out {out}',
  ]


def _header(workdir, study, record, rows, groups, tests, out) -> list[str]:
  """The title, the commands, what was run and how to read the tables."""
  ident = record['identity']
  objective, ppl = ident['objective'], ident['direction'] == 'minimize'
  trials = study.get_trials(deepcopy=False)
  starts = [t.datetime_start for t in trials if t.datetime_start]
  ends = [t.datetime_complete for t in trials if t.datetime_complete]
  walls = [r['wall_s'] for r in rows if isinstance(r.get('wall_s'), (int, float))]
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
      *_command(record['study_name'], workdir, out, trials),
      '```',
      '',
      f"- base experiment: task `{ident['base'].get('task')}`, "
      f"{ident['base'].get('num_train_steps')} steps, "
      f"{ident['seeds']} seeds per variant (seed = base seed + 0, 1, ...)",
      f'- objective: `{objective}` ({ident["direction"]}; best value over the evaluations)',
      f"- runs: {len(rows)} of {record['total_runs']} ({state_counts(rows)}); complete runs "
      f'per variant: n = {_span(counts)}',
  ]
  if walls:
    lines.append(f'- training wall time: {sum(walls) / 60:.1f} min summed over runs')
  if starts and ends:
    lines.append(f'- sweep span: {min(starts):%Y-%m-%d %H:%M} -> {max(ends):%H:%M} UTC')
  return lines + [
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


def _axis_section(axis, info, groups, ident, tests, plot_dir) -> tuple[list[str], list[str]]:
  """(Markdown lines, plot paths) of one axis: its table, objective-vs-axis and curves plots."""
  objective, ppl = ident['objective'], ident['direction'] == 'minimize'
  lines = ['', f'## {axis}', '']
  lines += table_lib.axis_table(axis, info, groups, objective, ppl, tests)
  order = table_lib.table_order(info)
  points = [(v, n, groups[n]['objective']) for n, v in order if n in groups]
  if not points:  # a sweep stopped before any run of this axis finished
    return lines + ['', 'No plots: no run of this axis is complete yet.'], []
  safe = axis.replace('/', '_')
  made = [
      ablation_plots.axis_plot(
          axis,
          points,
          objective,
          os.path.join(plot_dir, f'ablation_{safe}.png'),
          paper=table_lib.paper_points(axis, info, 'ppl' if ppl else 'bleu'),
          paper_metric='PPL' if ppl else 'BLEU',
      ),
      ablation_plots.curves_plot(
          axis,
          {n: [r['workdir'] for r in groups[n]['rows']] for n, _ in order if n in groups},
          objective,
          os.path.join(plot_dir, f'ablation_curves_{safe}.png'),
      ),
  ]
  lines += ['']
  lines += [f'![{os.path.basename(p)}](plots/{os.path.basename(p)})' for p in made]
  return lines, made


def _attention_section(ordered, plot_dir) -> tuple[list[str], list[str]]:
  """The attention of the same input per variant (seed 0 of each), side by side."""
  first = {n: seed_zero(g['rows'])['workdir'] for n, g in ordered.items()}
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top

  try:
    heat = ablation_plots.attention_grid(first, os.path.join(plot_dir, 'ablation_attention.png'))
  except checkpointing.CheckpointNotFoundError as e:  # carried without checkpoints or views
    return [
        '',
        f'No attention grid: a seed-0 run has neither a checkpoint nor an attention view here ({e}).',
    ], []
  if not heat:
    return [], []
  title = '## Attention of the same input per variant'
  return ['', title, '', '![attention](plots/' + os.path.basename(heat) + ')'], [heat]


def write(workdir: str, study, record: dict[str, Any], rows, out: str | None = None) -> list[str]:
  """Writes OUT/ablation.md and OUT/plots/ablation_*.png (OUT = workdir by default)."""
  out = out or workdir
  plot_dir = os.path.join(out, 'plots')
  os.makedirs(plot_dir, exist_ok=True)
  ident = record['identity']
  ppl = ident['direction'] == 'minimize'
  groups = table_lib.group(rows)
  axis_infos = table_lib.axes(ident)
  in_axis_order = [n for info in axis_infos.values() for n, _ in table_lib.table_order(info)]
  tests = table_lib.comparisons(groups, in_axis_order)
  lines = _header(workdir, study, record, rows, groups, tests, out)
  paths = []
  for axis, info in axis_infos.items():
    more, made = _axis_section(axis, info, groups, ident, tests, plot_dir)
    lines += more
    paths += made
  order = [n for n in dict.fromkeys(in_axis_order) if n in groups] + [
      n for n in groups if n not in in_axis_order
  ]  # the tables' order, not the order the trials ran in
  ordered = {n: groups[n] for n in order}
  lines += tuning_report.section(workdir, record, ordered)  # rates chosen, where runs stopped
  lines += time_to_target.section(ordered, ident['objective'], maximize=not ppl)
  size_names = [n for n in groups if variants.axis(n) in SIZE_AXES]
  if size_names:
    lines += ['', '## Scaling: L(N) = E + A N^-α and (N_c / N)^α', '']
    more, made = scaling_report.scaling_section(
        [variants.BASE, *size_names],
        groups,
        ident['base'].get('task'),
        os.path.join(plot_dir, 'ablation_scaling.png'),
    )
    lines += more + [''] + [f'![scaling](plots/{os.path.basename(p)})' for p in made]
    paths += made
  more, made = _attention_section(ordered, plot_dir)
  lines += more
  paths += made
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
