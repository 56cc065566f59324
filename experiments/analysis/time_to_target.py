"""How fast each variant of an ablation reaches one level of the objective: steps and wall time
to a common target (issue 22: 'wall time to a given BLEU').

The target is the weakest run's best objective (the lowest best BLEU or accuracy, the highest best
perplexity), so every complete run of every variant reaches it. A run's steps to the target are
those of its first evaluation at or past the target (its metrics.jsonl); its wall time to the
target is those steps over the run's training steps/s, so evaluation time is not counted.
"""

from __future__ import annotations

import statistics
from typing import Any

from experiments.core import metric_logging


def first_step(history: list[dict[str, Any]], objective: str, target: float, maximize: bool):
  """The step of the first evaluation whose `objective` is at or past `target`, else None
  (lines of `run.py eval`, which carry a 'checkpoint', are not training evaluations)."""
  for h in history:
    value = h.get(objective)
    if 'checkpoint' in h or not isinstance(value, (int, float)) or 'step' not in h:
      continue
    if (value >= target) if maximize else (value <= target):
      return int(h['step'])
  return None


def _cell(values: list[float], digits: int) -> str:
  if not values:
    return '–'
  mean = statistics.fmean(values)
  if len(values) == 1:
    return f'{mean:.{digits}g}'
  return f'{mean:.{digits}g} ± {statistics.stdev(values):.3g}'


def section(groups: dict[str, dict[str, Any]], objective: str, maximize: bool) -> list[str]:
  """Markdown lines of the report's section ([] with fewer than two variants): per variant n, the
  steps and the wall seconds to the target (mean ± std over runs); `groups` as
  ablation_table.group, in the order of the report's tables."""
  best = [o for g in groups.values() for o in g['objective']]
  if len(groups) < 2 or not best:
    return []
  target = min(best) if maximize else max(best)
  lines = [
      '',
      f'## Time to `{objective}` = {target:.4g}',
      '',
      f"The target is the weakest run's best `{objective}`, so every run reaches it. Steps: the "
      "first evaluation at or past it; wall s: those steps over the run's training steps/s "
      '(evaluations not counted). Resolution: one evaluation interval.',
      '',
      '| variant | n | steps to target | wall s to target |',
      '|---|---|---|---|',
  ]
  for name, g in groups.items():
    steps, walls = [], []
    for r in g['rows']:
      history = metric_logging.read_history(r['workdir'])  # [] without a metrics file
      step = first_step(history, objective, target, maximize)
      if step is None:
        continue
      steps.append(step)
      if isinstance(r.get('steps_per_s'), (int, float)) and r['steps_per_s'] > 0:
        walls.append(step / r['steps_per_s'])
    lines.append(f'| {name} | {len(steps)} | {_cell(steps, 4)} | {_cell(walls, 3)} |')
  return lines
