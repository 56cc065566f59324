"""The report of an ablation sweep (a sweep over named variants, configs/ablations/*.py).

`run.py report --workdir DIR` writes it next to report.md as DIR/ablation.md + DIR/plots/; to
write it elsewhere (docs/ablations/NAME/) run

  python -m experiments.analysis.ablation_report --workdir DIR --out docs/ablations/NAME

Per axis (the part of a variant name before '='; 'base' belongs to every axis) a table of mean
± std over seeds of the objective, the final test metrics and training loss, parameters,
steps/s and wall time, beside Vaswani et al. 2017 Table 3 (configs/ablations/vaswani2017_table3.json)
where the paper has the row, with whether our effect has the paper's direction and whether it
exceeds the seed spread. Plots: objective vs each axis, learning curves per variant, attention
of the same input per variant side by side, and for size axes the power-law fit
L(N) = E + A N^-alpha of the validation loss (experiments/analysis/scaling_laws.py) over non-embedding and
total parameters.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from typing import Any

from experiments.core import metric_logging
from experiments.analysis import ablation_plots
from experiments.analysis import paper as paper_lib
from experiments.analysis.results import load_sweep, trial_rows
from experiments.sweep import variants
from experiments.core.task import RunError

REPORT_FILE = 'ablation.md'
SHOWN_METRICS = ('accuracy', 'bleu', 'perplexity')  # final test metrics in the tables
SIZE_AXES = ('size', 'N', 'd_model', 'd_ff')  # axes whose points enter the scaling fit


def is_ablation(record: dict[str, Any]) -> bool:
  return 'variants' in record['identity']


def _value(text: str) -> Any:
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _get(config: dict[str, Any], dotted: str) -> Any:
  node = config
  for part in dotted.split('.'):
    node = node.get(part) if isinstance(node, dict) else None
  return node


def axes(ident: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """axis -> {'base_value': the base experiment's value, 'variants': [(name, value)]}."""
  out: dict[str, dict[str, Any]] = {}
  import json  # pylint: disable=g-import-not-at-top

  for name, overrides in json.loads(ident['variants']):
    if name == variants.BASE:
      continue
    entry = out.setdefault(variants.axis(name), {'base_value': None, 'variants': []})
    value = _value(variants.label(name))
    entry['variants'].append((name, value))
    if entry['base_value'] is None and overrides:
      fields = sorted(overrides, key=lambda f: f.rsplit('.', 1)[-1] != variants.axis(name))
      base_value = _get(ident['base'], fields[0])  # the field named like the axis, if any
      entry['base_value'] = base_value if isinstance(value, type(base_value)) else 'base'
  return out


def _final_metrics(workdir: str) -> dict[str, float]:
  """Final test metrics ('test_2016/bleu', ...) and the last training loss of a trial."""
  history = metric_logging.read_history(workdir) if os.path.isdir(workdir) else []
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


def _sign(x: float) -> int:
  return (x > 0) - (x < 0)


def paper_reference(name: str, axis: str, value: Any, base_value: Any) -> tuple[str, Any] | None:
  """(paper row name, PaperRow) to compare variant `name` with: the same row, or for a numeric
  axis the paper's nearest row on the same side of its base (our N=1 vs base 2 -> paper N=4)."""
  if name in paper_lib.rows():
    return name, paper_lib.rows()[name]
  paper_base = paper_lib.base_values().get(axis)
  if not all(isinstance(x, (int, float)) for x in (value, base_value, paper_base)):
    return None
  side = _sign(value - base_value)
  rows = [
      (abs(v - paper_base), n)
      for n in paper_lib.rows()
      if variants.axis(n) == axis
      and isinstance(v := _value(variants.label(n)), (int, float))
      and _sign(v - paper_base) == side
  ]
  if not rows:
    return None
  n = min(rows)[1]
  return n, paper_lib.rows()[n]


def _direction(
    axis: str, value: Any, base_value: Any, delta: float, ref: tuple[str, Any] | None, ppl: bool
) -> str:
  """Whether our change of the objective has the paper's sign (per unit of the axis for
  numeric axes; BLEU for maximised objectives, perplexity for minimised ones)."""
  if ref is None:
    return '–'
  ref_name, row = ref
  paper_delta = (
      (row.ppl - paper_lib.rows()['base'].ppl)
      if ppl
      else (row.bleu - paper_lib.rows()['base'].bleu)
  )
  if paper_delta == 0:
    return 'paper: no change'
  ours, theirs = _sign(delta), _sign(paper_delta)
  if isinstance(value, (int, float)) and isinstance(base_value, (int, float)):
    paper_value = _value(variants.label(ref_name))
    ours *= _sign(value - base_value)
    theirs *= _sign(paper_value - paper_lib.base_values()[axis])
  return 'yes' if ours == theirs else 'no'


def _exceeds_spread(a: list[float], b: list[float]) -> str:
  """|mean a - mean b| > 2 standard errors of the difference (needs >= 2 runs each)."""
  if len(a) < 2 or len(b) < 2:
    return '–'
  (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
  se = math.sqrt(sa**2 / len(a) + sb**2 / len(b))
  return 'yes' if abs(ma - mb) > 2 * se else 'no'


def _num(r: dict[str, Any], key: str) -> float | None:
  v = r.get(key)
  return float(v) if isinstance(v, (int, float)) else None


def axis_table(
    axis: str, info: dict[str, Any], groups: dict[str, dict[str, Any]], objective: str, ppl: bool
) -> list[str]:
  """Markdown lines of one axis's table."""
  metrics = sorted({k for g in groups.values() for k in g['metrics'] if k != 'train/loss'})
  head = ['variant', 'runs', f'{objective}', *metrics, 'final train loss', 'params']
  head += ['steps/s', 'wall s / run', 'paper PPL', 'paper BLEU', 'Δ vs base']
  head += ['paper direction', '> seed spread']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  base = groups.get(variants.BASE)
  entries = [(variants.BASE, info['base_value'])] + info['variants']
  if all(isinstance(v, (int, float)) for _, v in entries):
    entries.sort(key=lambda e: e[1])
  for name, value in entries:
    g = groups.get(name)
    shown = f'{value} (base)' if name == variants.BASE else str(value)
    if g is None:
      lines.append('| ' + ' | '.join([shown, '0'] + ['not run'] + [''] * (len(head) - 3)) + ' |')
      continue
    if name != variants.BASE:
      ref = paper_reference(name, axis, value, info['base_value'])
    elif axis in paper_lib.base_values():  # an axis of Table 3: its base row
      ref = ('base', paper_lib.rows()['base'])
    else:  # e.g. the LM's sizes or the score function: the paper has no such row
      ref = None
    paper_cells = ['–', '–']
    if ref is not None:
      note = '' if ref[0] == name or name == variants.BASE else f' ({ref[0]})'
      paper_cells = [f'{ref[1].ppl}{note}', f'{ref[1].bleu}{note}']
    delta, direction, spread = '', '', ''
    if name != variants.BASE and base is not None:
      d = statistics.fmean(g['objective']) - statistics.fmean(base['objective'])
      delta = f'{d:+.3g}'
      direction = _direction(axis, value, info['base_value'], d, ref, ppl)
      spread = _exceeds_spread(g['objective'], base['objective'])
    rows = g['rows']
    params = {r['num_params'] for r in rows if r['num_params']}
    cells = [shown, str(len(g['objective'])), _pm(g['objective'])]
    cells += [_pm(g['metrics'].get(m, [])) for m in metrics]
    cells += [_pm(g['metrics'].get('train/loss', []))]
    cells += [', '.join(f'{p:,}' for p in sorted(params)) or '–']
    cells += [_pm([x for r in rows if (x := _num(r, 'steps_per_s')) is not None], 3)]
    cells += [_pm([x for r in rows if (x := _num(r, 'wall_s')) is not None], 3)]
    cells += [*paper_cells, delta, direction, spread]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def parameter_counts(workdir: str) -> dict[str, int]:
  """{'total', 'non_embedding'} of a trial's model (token / position tables excluded, as in
  Kaplan et al. 2020: transformer.language_model.count_parameters for the LM; any parameter
  under a name containing 'embed' for the other models)."""
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  restored = loop.restore_for_inference(workdir, 'latest')
  params = restored.state.params
  if restored.config.task == 'lm':
    from transformer.language_model import count_parameters  # pylint: disable=g-import-not-at-top

    return count_parameters(params)
  total = non_embedding = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    total += int(leaf.size)
    if not any('embed' in str(getattr(k, 'key', '')) for k in path):
      non_embedding += int(leaf.size)
  return {'total': total, 'non_embedding': non_embedding}


def _best_loss(workdir: str, metric: str) -> float | None:
  history = metric_logging.read_history(workdir) if os.path.isdir(workdir) else []
  values = [float(h[metric]) for h in history if metric in h and 'checkpoint' not in h]
  return min(values) if values else None


def scaling_section(
    names: list[str],
    groups: dict[str, dict[str, Any]],
    task: str,
    plot_path: str,
    num_bootstrap: int = 200,
) -> tuple[list[str], list[str]]:
  """(markdown lines, plot paths) of the power-law fit of the best validation loss over the
  runs of `names` (size variants), against non-embedding and total parameters."""
  from experiments.analysis import scaling_laws as scaling  # pylint: disable=g-import-not-at-top

  metric = 'eval/loss' if task == 'classification' else 'eval/nll'
  points: dict[str, tuple[list[float], list[float]]] = {
      'non_embedding': ([], []),
      'total': ([], []),
  }
  lines = [
      '| variant | non-embedding params | total params | runs | best validation ' f'`{metric}` |',
      '|---|---|---|---|---|',
  ]
  for name in names:
    g = groups.get(name)
    if g is None:
      continue
    counts = parameter_counts(g['rows'][0]['workdir'])
    losses = [x for r in g['rows'] if (x := _best_loss(r['workdir'], metric)) is not None]
    for kind in points:
      points[kind][0].extend([counts[kind]] * len(losses))
      points[kind][1].extend(losses)
    lines.append(
        f"| {name} | {counts['non_embedding']:,} | {counts['total']:,} | {len(losses)} | "
        f'{_pm(losses)} |'
    )
  lines.append('')
  reason = _not_falling_with_size(*points['non_embedding'])
  if reason:
    return lines + [f'No power-law fit: {reason}.'], []
  try:
    fits = {
        kind: scaling.bootstrap_fit(*points[kind], num_bootstrap=num_bootstrap) for kind in points
    }
  except ValueError as e:
    return lines + [f'No power-law fit: {e}.'], []
  lines += ['| parameters | E | A | α | 95% bootstrap intervals (E; α) |', '|---|---|---|---|---|']
  for kind, b in fits.items():
    f, ci = b.fit, b.intervals
    lines.append(
        f'| {kind} | {f.E:.4g} | {f.A:.4g} | {f.alpha:.4g} | '
        f"[{ci['E'][0]:.4g}, {ci['E'][1]:.4g}]; [{ci['alpha'][0]:.4g}, {ci['alpha'][1]:.4g}] |"
    )
  spread = max(points['non_embedding'][0]) / min(points['non_embedding'][0])
  lines += ['', f'Non-embedding sizes span {spread:.1f}x.']
  path = scaling.plot_fits(
      points, fits, plot_path, ylabel=f'best {metric}', title='L(N) = E + A N^-α (Huber, log)'
  )
  return lines, [path]


def _not_falling_with_size(sizes: list[float], losses: list[float]) -> str | None:
  """Why L = E + A N^-alpha (alpha > 0) cannot describe these runs, or None: the mean loss per
  size must fall as the size grows, a rise within the larger seed std of the two neighbours
  counted as noise. (Table 3 (C)-style axes of short runs often fail this: larger models are
  undertrained; a fit through them gives a meaningless alpha.)"""
  by_size: dict[float, list[float]] = {}
  for n, loss in zip(sizes, losses):
    by_size.setdefault(n, []).append(loss)
  stats = sorted((n, *_mean_std(v)) for n, v in by_size.items())
  for (n0, m0, s0), (n1, m1, s1) in zip(stats, stats[1:]):
    if m1 > m0 + max(s0, s1):
      return (
          f'the mean loss does not fall with size ({m0:.4g} at {n0:,.0f} non-embedding parameters, '
          f'{m1:.4g} at {n1:,.0f}, beyond the seed spread); a power law with alpha > 0 cannot '
          'describe these runs'
      )
  return None


def _command(name: str, workdir: str, out: str) -> list[str]:
  kind, _, arg = name.partition('_')
  return [
      f'TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config '
      f'configs/ablations/{kind}.py:{arg} --workdir {workdir}',
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
  states: dict[str, int] = {}
  for r in rows:
    states[r['state']] = states.get(r['state'], 0) + 1
  lines = [
      f"# Ablation `{record['study_name']}`",
      '',
      'Regenerate (the sweep resumes; the report reads its study and trial directories):',
      '',
      '```',
      *_command(record['study_name'], workdir, out),
      '```',
      '',
      f"- base experiment: task `{task}`, {ident['base'].get('num_train_steps')} steps, "
      f"{ident['seeds']} seeds per variant (seed = base seed + 0, 1, ...)",
      f'- objective: `{objective}` ({ident["direction"]}; best value over the evaluations)',
      f"- runs: {len(rows)} of {record['total_runs']} ("
      + ', '.join(f'{n} {s.lower()}' for s, n in sorted(states.items()))
      + ')',
  ]
  if walls:
    lines.append(f'- training wall time: {sum(walls) / 60:.1f} min summed over runs')
  if starts and ends:
    lines.append(f'- sweep span: {min(starts):%Y-%m-%d %H:%M} -> {max(ends):%H:%M} UTC')
  lines += [
      '',
      'Paper: Vaswani et al. 2017, Table 3 (WMT14 en-de, newstest2013; PPL per wordpiece, BLEU), '
      'base model 4.92 / 25.8. A paper cell with a row name in brackets is the nearest paper row '
      "on the same side of the paper's base. 'paper direction': our change of the objective per "
      f"unit of the axis has the sign of the paper's change of {'PPL' if ppl else 'BLEU'}. "
      "'> seed spread': |Δ| > 2 standard errors of the difference of the means.",
  ]
  paths = []
  axis_infos = axes(ident)
  for axis, info in axis_infos.items():
    lines += ['', f'## {axis}', '']
    lines += axis_table(axis, info, groups, objective, ppl)
    names = [variants.BASE] + [n for n, _ in info['variants']]
    points = [
        (info['base_value'] if n == variants.BASE else v, n, groups[n]['objective'])
        for n, v in [(variants.BASE, None)] + info['variants']
        if n in groups
    ]
    paper = []
    for n, v in [(variants.BASE, info['base_value'])] + info['variants']:
      if n in paper_lib.rows() and n in groups:
        row = paper_lib.rows()['base' if n == variants.BASE else n]
        paper.append((v, row.ppl if ppl else row.bleu))
    safe = axis.replace('/', '_')
    made = [
        ablation_plots.axis_plot(
            axis,
            points,
            objective,
            os.path.join(plot_dir, f'ablation_{safe}.png'),
            paper=paper if len(paper) > 1 else (),
            paper_label=f"paper {'PPL' if ppl else 'BLEU'}",
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
  size_names = [n for n in groups if variants.axis(n) in SIZE_AXES]
  if size_names:
    lines += ['', '## Scaling: L(N) = E + A N^-α', '']
    more, made = scaling_section(
        [variants.BASE, *size_names], groups, task, os.path.join(plot_dir, 'ablation_scaling.png')
    )
    lines += more + [''] + [f'![scaling](plots/{os.path.basename(p)})' for p in made]
    paths += made
  in_axis_order = [variants.BASE] + [n for info in axis_infos.values() for n, _ in info['variants']]
  order = [n for n in dict.fromkeys(in_axis_order) if n in groups] + [
      n for n in groups if n not in in_axis_order
  ]  # the panels in the tables' order, not the order the trials ran in
  first = {n: groups[n]['rows'][0]['workdir'] for n in order}
  heat = ablation_plots.attention_grid(first, os.path.join(plot_dir, 'ablation_attention.png'))
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
