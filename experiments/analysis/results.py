"""A sweep's results as the reports read them: its Optuna study and sweep.json record
(`load_sweep`), one row per trial (`trial_rows`), how many trials are in each state
(`state_counts`) and the mean and spread over seeds per point (`seed_summary`)."""

from __future__ import annotations

import collections
import json
import os
import statistics
from typing import Any

from experiments.sweep import files
from experiments.sweep import storage as storage_lib
from experiments.sweep import worker as worker_lib
from experiments.core.task import RunError


class NotASweepError(RunError, FileNotFoundError):
  """The directory holds no sweep."""


def load_sweep(workdir: str, url: str | None):
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


def trial_rows(study, record: dict[str, Any], workdir: str) -> list[dict[str, Any]]:
  """One dict per trial with everything the table shows."""
  fields = [d['field'] for d in record['dims']]
  rows = []
  for t in study.get_trials(deepcopy=False):
    a = t.user_attrs
    # This sweep dir's own copy of the trial (a dir moved or carried to another machine), else
    # where its worker recorded it (a database study shared by machines with their own dirs).
    local = worker_lib.trial_dir(workdir, t.number)
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
            'workdir': local if os.path.isdir(local) else a.get('workdir', local),
        }
    )
  return rows


def state_counts(rows: list[dict[str, Any]]) -> str:
  """'3 complete, 1 failed': the trials per state, states in alphabetical order."""
  counts = collections.Counter(r['state'] for r in rows)
  return ', '.join(f'{n} {state.lower()}' for state, n in sorted(counts.items()))


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
