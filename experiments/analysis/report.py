"""DIR/report.md and DIR/plots/*.png of a sweep, from its Optuna study and trial workdirs.

report.md: one row per trial (number, state, swept values, seed, objective, best step, steps,
wall time, steps/s, parameter count), the best trial, failure / pruning reasons, and for
repeated seeds the mean +- std of the objective per point.
plots/: objective vs each swept field (log axis for log ranges), the objective's learning
curves of all trials overlaid, and Optuna's optimization history and parameter importances.
"""

from __future__ import annotations

import os
from typing import Any

from experiments.core import metric_logging
from experiments.analysis import ablation_report
from experiments.analysis.results import load_sweep, seed_summary, state_counts, trial_rows
from experiments.sweep import files

REPORT_FILE = 'report.md'


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f'{v:.4g}'
  return '' if v is None else str(v)


def _markdown(study, record, rows, plots: list[str], workdir: str) -> str:
  ident = record['identity']
  fields = [d['field'] for d in record['dims']]
  objective, direction = ident['objective'], ident['direction']
  lines = [
      f"# Sweep `{record['study_name']}`",
      '',
      f'- objective: `{objective}` ({direction}; eval metrics: best value over the evaluations)',
      f"- sampler: {ident['sampler']} (seed {ident['sampler_seed']}), pruner: {ident['pruner']}, "
      f"seeds per point: {ident['seeds']}",
      f"- base experiment: {ident['base'].get('task')} "
      f"({ident['base'].get('num_train_steps')} steps); storage: {record['storage']}",
      f"- trials: {len(rows)} of {record['total_runs']} ({state_counts(rows)})",
      '- wall s, steps/s: whole trial (compilation, evaluations, checkpoints included)',
      '',
  ]
  done = [r for r in rows if r['objective'] is not None]
  if done:
    pick = max if direction == 'maximize' else min
    best = pick(done, key=lambda r: r['objective'])
    shown = ', '.join(f'{k}={_fmt(v)}' for k, v in best['values'].items())
    lines += [
        f"**Best trial: {best['number']}** - {objective} = {best['objective']:.6g} at step "
        f"{best['best_step']}; {shown}, seed {best['seed']} (`{best['workdir']}`)",
        '',
    ]
  head = ['#', 'state', *fields, 'seed', objective, 'best step', 'steps', 'wall s', 'steps/s']
  head += ['params', 'note']
  lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    cells = [r['number'], r['state'], *[r['values'][f] for f in fields], r['seed']]
    cells += [r['objective'], r['best_step'], r['steps'], r['wall_s'], r['steps_per_s']]
    cells += [r['num_params'], (r['note'] or '').splitlines()[0][:120] if r['note'] else '']
    lines.append('| ' + ' | '.join(_fmt(c).replace('|', '/') for c in cells) + ' |')
  if ident['seeds'] > 1:
    lines += ['', f'Mean +- std of {objective} over seeds, per point:', '']
    lines += ['| ' + ' | '.join([*fields, 'runs', 'mean', 'std']) + ' |']
    lines += ['|' + '---|' * (len(fields) + 3)]
    for values, n, mean, std in seed_summary(rows):
      cells = [*[values[f] for f in fields], n, f'{mean:.4f}', f'{std:.4f}']
      lines.append('| ' + ' | '.join(_fmt(c) for c in cells) + ' |')
  lines += ['', 'Plots:', '']
  lines += [f'- `{os.path.relpath(p, workdir)}`' for p in plots]
  return '\n'.join(lines) + '\n'


def _plots(study, record, rows, plot_dir: str) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(plot_dir, exist_ok=True)
  objective = record['identity']['objective']
  done = [r for r in rows if r['objective'] is not None]
  pruned = [r for r in rows if r['pruned_value'] is not None]
  paths = []
  for d in record['dims']:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    text = d['kind'] in ('grid', 'categorical') and any(isinstance(v, str) for v in d['values'])
    for group, key, style in (
        (done, 'objective', {'marker': 'o', 'label': 'complete'}),
        (pruned, 'pruned_value', {'marker': 'x', 'label': 'pruned (value when stopped)'}),
    ):
      xs = [r['values'][d['field']] for r in group]
      if group:
        ax.scatter([str(x) for x in xs] if text else xs, [r[key] for r in group], **style)
    if pruned:
      ax.legend(fontsize=7)
    if d['log']:
      ax.set_xscale('log')
    ax.set_xlabel(d['field'] + (' (log)' if d['log'] else ''))
    ax.set_ylabel(objective)
    ax.set_title(f'{objective} vs {d["field"]} ({len(done)} complete trials)', fontsize=9)
    ax.grid(alpha=0.3)
    path = os.path.join(plot_dir, f"objective_vs_{d['field'].replace('.', '_')}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

  fig, ax = plt.subplots(figsize=(6, 4))
  for r in rows:
    history = metric_logging.read_history(r['workdir'])  # [] without a metrics file
    points = [
        (h['step'], h[objective]) for h in history if objective in h and 'checkpoint' not in h
    ]
    points = [(s, v) for s, v in points if isinstance(v, (int, float))]
    if points:
      style = '-' if r['state'] == 'COMPLETE' else ':'
      ax.plot(*zip(*points), style, marker='.', label=f"{r['number']} ({r['state'].lower()})")
  ax.set_xlabel('training step')
  ax.set_ylabel(objective)
  ax.set_title('learning curves of all trials (dotted: pruned / failed / running)', fontsize=9)
  ax.grid(alpha=0.3)
  if len(rows) <= 16:
    ax.legend(fontsize=6)
  fig.tight_layout()
  path = os.path.join(plot_dir, 'learning_curves.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  paths.append(path)

  from optuna.visualization import matplotlib as ovm  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top

  for name, fn in (
      ('optimization_history', ovm.plot_optimization_history),
      ('param_importances', ovm.plot_param_importances),
  ):
    if name == 'param_importances' and (len(done) < 3 or len(record['dims']) < 2):
      continue  # nothing to rank
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # optuna's "experimental" warnings
        ax = fn(study)
      fig = ax.figure if hasattr(ax, 'figure') else ax
      fig.set_size_inches(6, 4)
      fig.tight_layout()
      path = os.path.join(plot_dir, f'{name}.png')
      fig.savefig(path, dpi=100)
      plt.close(fig)
      paths.append(path)
    except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. all values equal
      print(f'[report] no {name} plot: {e}')
  return paths


def write_report(workdir: str, url: str | None) -> list[str]:
  """Writes report.md and plots; returns [report path, plot paths...]."""
  study, record = load_sweep(workdir, url)
  rows = trial_rows(study, record, workdir)
  plots = _plots(study, record, rows, os.path.join(workdir, 'plots'))
  path = os.path.join(workdir, REPORT_FILE)
  files.write_atomic(path, _markdown(study, record, rows, plots, workdir))
  if ablation_report.is_ablation(record):  # a sweep over named variants: ablation.md too
    return [path, *plots, *ablation_report.write(workdir, study, record, rows)]
  return [path, *plots]
