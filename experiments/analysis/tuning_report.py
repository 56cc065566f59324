"""The tune-then-compare and convergence part of an ablation report.

For the compare stage of a tuned ablation (experiments/sweep/tune_compare.py) a table of the tune
stage (the objective of each variant at each learning rate, the chosen rate in bold); for every
ablation with early stopping (config.early_stopping_patience > 0) a table of where each run
stopped: `early_stopping/stopped_at` in its metrics.jsonl, else its last step (the cap).
"""

from __future__ import annotations

import json
import os
from typing import Any

from experiments.core import early_stopping
from experiments.core import metric_logging
from experiments.sweep import tune_compare


def _history(workdir: str) -> list[dict[str, Any]]:
  return metric_logging.read_history(workdir)  # [] without a metrics file


def stop_step(workdir: str) -> tuple[int | None, bool]:
  """(last training step, whether early stopping ended the run) of a trial's run."""
  history = _history(workdir)
  stopped = early_stopping.stopped_at(history)
  if stopped is not None:
    return stopped, True
  steps = [int(h['step']) for h in history if 'checkpoint' not in h and 'step' in h]
  return (max(steps) if steps else None), False


def tune_lines(compare_dir: str, url: str | None = None) -> list[str]:
  """Markdown lines: per variant the tune stage's objective at each rate (mean over its seeds)
  and the rate the compare stage uses; [] when `compare_dir` is not a tuned compare stage."""
  from experiments.analysis.results import load_sweep  # pylint: disable=g-import-not-at-top

  tune_dir = tune_compare.tune_dir_of(compare_dir)
  if tune_dir is None:
    return []
  study, record = load_sweep(tune_dir, url)
  results = tune_compare.tune_results(study.get_trials(deepcopy=False))
  direction = record['identity']['direction']
  objective = record['identity']['objective']
  compare = json.loads(load_sweep(compare_dir, url)[1]['identity']['variants'])
  used = {name: o.get(tune_compare.RATE) for name, o in compare}
  rates = sorted({r for by_rate in results.values() for r in by_rate})
  lines = [
      f'Learning rate tuned per variant (tune stage: `{tune_dir}`, {objective} of '
      f'{record["identity"]["seeds"]} seed(s) per rate; **bold**: the rate the comparison uses, '
      f'the best ({direction})):',
      '',
      '| variant | ' + ' | '.join(f'lr {r:g}' for r in rates) + ' | chosen lr |',
      '|---|' + '---|' * (len(rates) + 1),
  ]
  for name in used:
    cells = []
    for r in rates:
      runs = results.get(name, {}).get(r)
      text = '–' if runs is None else ('failed' if not runs else f'{sum(runs) / len(runs):.4g}')
      cells.append(f'**{text}**' if used[name] == r else text)
    chosen = used[name]
    lines.append(
        f'| {name} | ' + ' | '.join(cells) + f' | {"–" if chosen is None else f"{chosen:g}"} |'
    )
  edge = [n for n, r in used.items() if len(rates) > 1 and r in (rates[0], rates[-1])]
  if edge:
    lines += [
        '',
        f'At the edge of the rates tried ({rates[0]:g} .. {rates[-1]:g}): {", ".join(edge)}. '
        'Their best rate may lie outside the grid: their comparison may understate them.',
    ]
  return lines


def stop_lines(groups: dict[str, dict[str, Any]], cap: int | None) -> list[str]:
  """Markdown lines: per variant the step where each run stopped (seed order), with how many
  were ended by early stopping before the cap `cap`."""
  lines = [
      f'Where each run stopped (early stopping on the validation loss; cap {cap} steps):',
      '',
      '| variant | runs | stopped early | stopping steps (by seed) |',
      '|---|---|---|---|',
  ]
  early_total = 0
  for name, g in groups.items():
    rows = sorted(g['rows'], key=lambda r: (r.get('seed') is None, r.get('seed')))
    stops = [stop_step(r['workdir']) for r in rows]
    shown = ', '.join(
        '?' if s is None else f'{s}' + ('' if early else ' (cap)') for s, early in stops
    )
    lines.append(f'| {name} | {len(stops)} | {sum(e for _, e in stops)} | {shown} |')
    early_total += sum(e for _, e in stops)
  if not early_total:
    lines += [
        '',
        'No run stopped early: every run trained to the cap, its validation loss still improving '
        'within the patience window, so these runs are converged only as far as the cap allows.',
    ]
  return lines


def section(workdir: str, record: dict[str, Any], groups: dict[str, dict[str, Any]]) -> list[str]:
  """The report's 'Tuning and convergence' section ([] for an untuned ablation without early
  stopping); `groups` in the order of the report's tables."""
  base = record['identity']['base']
  lines = tune_lines(workdir)
  if base.get('early_stopping_patience'):
    lines += [''] if lines else []
    lines += stop_lines(groups, base.get('num_train_steps'))
  return ['', '## Tuning and convergence', '', *lines] if lines else []


def staged_workdir(workdir: str, study_name: str = '') -> str | None:
  """DIR of `run.py sweep --workdir DIR` of a tuned ablation when `workdir` is its compare stage,
  or its tune stage (DIR/tune holding the study NAME_tune), else None."""
  parent, name = os.path.split(os.path.normpath(workdir))
  is_tune = name == tune_compare.TUNE_DIR and study_name.endswith(tune_compare.TUNE_SUFFIX)
  if not is_tune and tune_compare.tune_dir_of(workdir) is None:
    return None
  return parent
