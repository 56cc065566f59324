"""DIR/report.md and DIR/plots/*.png of a sweep, from its Optuna study and trial workdirs.

report.md: one row per trial (number, state, swept values, seed, objective, best step, steps,
wall time, steps/s, parameter count), the best trial, failure / pruning reasons, and for
repeated seeds the mean +- std of the objective per point.
plots/: objective vs each swept field (log axis for log ranges), the objective's learning
curves of all trials overlaid, and Optuna's optimization history and parameter importances.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from typing import Any

from experiments import metric_logging
from experiments.sweep import files
from experiments.sweep import storage as storage_lib
from experiments.sweep import worker as worker_lib
from experiments.task import RunError

REPORT_FILE = 'report.md'


class NotASweepError(RunError, FileNotFoundError):
  """The directory holds no sweep."""


def open_study(workdir: str, url: str | None):
  import optuna  # pylint: disable=g-import-not-at-top

  record = files.read_record(workdir)
  if record is None:
    path = os.path.join(workdir, files.SWEEP_FILE)
    raise NotASweepError(f'{path} not found: is {workdir!r} a directory of `run.py sweep`?')
  if not url and not str(record.get('storage', 'journal file')).startswith('journal file'):
    raise storage_lib.StorageError(
        f"the sweep's study is in {record['storage']}; pass --storage (or "
        f'${storage_lib.ENV}) with its URL'
    )
  store = storage_lib.open_storage(url, workdir)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  try:
    study = optuna.load_study(study_name=record['study_name'], storage=store)
  except KeyError:
    raise NotASweepError(
        f"no study {record['study_name']!r} in {storage_lib.describe(url, workdir)}"
    ) from None
  return study, record


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f'{v:.4g}'
  return '' if v is None else str(v)


def trial_rows(study, record: dict[str, Any], workdir: str) -> list[dict[str, Any]]:
  """One dict per trial with everything the table shows."""
  fields = [d['field'] for d in record['dims']]
  rows = []
  for t in study.get_trials(deepcopy=False):
    a = t.user_attrs
    rows.append(
        {
            'number': t.number,
            'state': t.state.name,
            'values': {f: t.params.get(f) for f in fields},
            'seed': a.get('seed', t.params.get('seed')),
            'objective': t.value if t.state.name == 'COMPLETE' else None,
            'pruned_value': t.value if t.state.name == 'PRUNED' else None,  # where it stopped
            'best_step': a.get('objective_step'),
            'steps': a.get('steps'),
            'wall_s': a.get('wall_s'),
            'steps_per_s': a.get('steps_per_s'),
            'num_params': a.get('num_params'),
            'note': a.get('fail_reason') or _pruned_note(t),
            'workdir': a.get('workdir', worker_lib.trial_dir(workdir, t.number)),
        }
    )
  return rows


def _pruned_note(t) -> str:
  if 'pruned_at_step' not in t.user_attrs:
    return ''
  step = t.user_attrs['pruned_at_step']
  value = t.intermediate_values.get(step)
  return f'pruned at step {step}' + (f' (objective there {value:.4g})' if value is not None else '')


def seed_summary(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int, float, float]]:
  """(values, n, mean, std) of the completed objective per point (std 0 for one seed)."""
  groups: dict[str, list[float]] = {}
  points: dict[str, dict[str, Any]] = {}
  for r in rows:
    if r['objective'] is None:
      continue
    key = json.dumps(r['values'], sort_keys=True)
    groups.setdefault(key, []).append(r['objective'])
    points[key] = r['values']
  return [
      (points[k], len(v), statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
      for k, v in groups.items()
  ]


def _markdown(study, record, rows, plots: list[str], workdir: str) -> str:
  ident = record['identity']
  fields = [d['field'] for d in record['dims']]
  objective, direction = ident['objective'], ident['direction']
  states: dict[str, int] = {}
  for r in rows:
    states[r['state']] = states.get(r['state'], 0) + 1
  lines = [
      f"# Sweep `{record['study_name']}`",
      '',
      f'- objective: `{objective}` ({direction}; eval metrics: best value over the evaluations)',
      f"- sampler: {ident['sampler']} (seed {ident['sampler_seed']}), pruner: {ident['pruner']}, "
      f"seeds per point: {ident['seeds']}",
      f"- base experiment: {ident['base'].get('task')} "
      f"({ident['base'].get('num_train_steps')} steps); storage: {record['storage']}",
      f"- trials: {len(rows)} of {record['total_runs']} "
      + '('
      + ', '.join(f'{n} {s.lower()}' for s, n in sorted(states.items()))
      + ')',
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
    history = metric_logging.read_history(r['workdir']) if os.path.isdir(r['workdir']) else []
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
  study, record = open_study(workdir, url)
  rows = trial_rows(study, record, workdir)
  plots = _plots(study, record, rows, os.path.join(workdir, 'plots'))
  path = os.path.join(workdir, REPORT_FILE)
  files.write_atomic(path, _markdown(study, record, rows, plots, workdir))
  from experiments.sweep import ablation_report  # pylint: disable=g-import-not-at-top

  if ablation_report.is_ablation(record):  # a sweep over named variants: ablation.md too
    return [path, *plots, *ablation_report.write(workdir, study, record, rows)]
  return [path, *plots]


def _finite(x: Any) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x)
