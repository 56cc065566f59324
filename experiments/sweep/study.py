"""The Optuna study of a sweep: sampler, pruner, and the check that a resumed sweep is the
same sweep (its identity fields are stored in the study and in DIR/sweep.json).

Trial user attributes written by the workers (read by the report):
  seed                         the run's seed
  host, pid, heartbeat         who runs it (claims.py: its lock decides; a trial whose worker
                               is gone is resumed, not re-run)
  workdir                      DIR/trials/<number> of the worker's machine
  objective_step, steps        step of the best objective value, last training step
  wall_s, steps_per_s          wall time of the worker sessions that ran it, steps / wall
  num_params                   parameter count of the model
  fail_reason                  why a FAIL trial failed; pruned_at_step for PRUNED
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import ml_collections
import numpy as np
import optuna

from experiments.core import configuration
from experiments.sweep import files
from experiments.sweep import space as space_lib
from experiments.sweep import spec as spec_lib
from experiments.core.task import RunError

SWEEP_FILE = files.SWEEP_FILE
IDENTITY_ATTR = 'sweep_identity'
# Identity fields added since the first sweeps. A record without one was written before the field
# counted (it may have run with any value): it is not compared.
_LATER_FIELDS = ('pruner_startup_trials',)


class SweepChangedError(RunError, ValueError):
  """The sweep config differs from the one the study / sweep dir was started with."""


class ObjectiveMissingError(RunError, ValueError):
  """The objective metric is not in a finished trial's metrics.jsonl."""


class _GridSampler(optuna.samplers.GridSampler):
  """GridSampler that runs every point once before any point's next seed (a sweep stopped
  early has all its points, with fewer seeds), and without its `study.stop()` when the grid is
  done, which only works inside `study.optimize`: the workers count runs themselves
  (spec.total_runs)."""

  def before_trial(self, study, trial) -> None:
    if 'grid_id' in trial.system_attrs or 'fixed_params' in trial.system_attrs:
      return  # resumed or enqueued trial: its point is already fixed
    unvisited = self._get_unvisited_grid_ids(study)
    if not unvisited:
      return super().before_trial(study, trial)
    # Grid ids index the (shuffled) grid. The trial number picks among the unvisited ids: the
    # same order for any run of the study, and two workers asking at once (consecutive
    # numbers, one unvisited set) take different points, also on two machines.
    if 'seed' in self._param_names:
      i = self._param_names.index('seed')
      lowest = min(self._all_grids[g][i] for g in unvisited)
      unvisited = [g for g in unvisited if self._all_grids[g][i] == lowest]
    grid_id = sorted(unvisited)[trial.number % len(unvisited)]
    study._storage.set_trial_system_attr(trial._trial_id, 'search_space', self._search_space)
    study._storage.set_trial_system_attr(trial._trial_id, 'grid_id', grid_id)

  def after_trial(self, study, trial, state, values) -> None:
    pass


def trial_seed(sampler_seed: int, trial_number: int) -> int:
  """The random / TPE sampler's seed for the draw of trial `trial_number`."""
  return int(np.random.SeedSequence([sampler_seed, trial_number]).generate_state(1)[0])


def make_sampler(
    config: ml_collections.ConfigDict, dims: list[space_lib.Dimension], trial_number: int = 0
) -> optuna.samplers.BaseSampler:
  """The sampler; a random / TPE point is drawn by a sampler made for its trial number.

  Trial numbers are unique in a study, so a resumed sweep, a second process on one sweep dir
  and workers on many machines never repeat one another's draws, and every run of a sweep
  draws trial n's point (given the same history) the same way."""
  if config.sampler == 'grid':
    grid = space_lib.grid_search_space(dims)
    if config.seeds > 1:
      grid['seed'] = spec_lib.seeds(config)
    return _GridSampler(grid, seed=config.sampler_seed)
  seed = trial_seed(config.sampler_seed, trial_number)
  if config.sampler == 'random':
    return optuna.samplers.RandomSampler(seed=seed)
  return optuna.samplers.TPESampler(seed=seed)


def make_pruner(config: ml_collections.ConfigDict) -> optuna.pruners.BasePruner:
  if config.pruner == 'median':
    return optuna.pruners.MedianPruner(
        n_startup_trials=config.get('pruner_startup_trials', 3),
        n_warmup_steps=config.pruner_warmup_steps,
    )
  if config.pruner == 'successive_halving':
    return optuna.pruners.SuccessiveHalvingPruner()
  return optuna.pruners.NopPruner()


def study_name(config: ml_collections.ConfigDict, config_path: str) -> str:
  if config.get('name'):
    return config.name
  return os.path.splitext(os.path.basename(config_path.partition(':')[0]))[0] or 'sweep'


def check_same(old: dict[str, Any], new: dict[str, Any], where: str) -> None:
  new = {k: v for k, v in new.items() if k in old or k not in _LATER_FIELDS}
  if isinstance(old.get('base'), dict):  # trainer fields added since the sweep started
    old = {**old, 'base': configuration.with_new_defaults(old['base'])}
  changes = configuration.diff(old, new)
  if changes:
    lines = [f'  {field}: {a!r} -> {b!r}' for field, a, b in changes[:20]]
    raise SweepChangedError(
        f'the sweep config differs from the one {where} was started with; changed fields:\n'
        + '\n'.join(lines)
        + '\nUse a new --workdir (or study name) for a different sweep, or the old config to '
        'resume. (num_trials may change.)'
    )


def open_study(
    config: ml_collections.ConfigDict,
    dims: list[space_lib.Dimension],
    storage: optuna.storages.BaseStorage,
    name: str,
    workdir: str,
    storage_description: str,
) -> optuna.Study:
  """Creates or loads the study; a changed sweep config is an error before anything runs."""
  ident = {**spec_lib.identity(config), 'study_name': name}
  sweep_file = os.path.join(workdir, SWEEP_FILE)
  recorded = files.read_record(workdir)
  if recorded is not None:  # (records from before study_name was part of the identity)
    old = {'study_name': recorded['study_name'], **recorded.get('identity', {})}
    check_same(old, ident, sweep_file)
  direction = config.direction
  study = optuna.create_study(
      storage=storage,
      study_name=name,
      direction=direction,
      sampler=make_sampler(config, dims),
      pruner=make_pruner(config),
      load_if_exists=True,
  )
  stored = study.user_attrs.get(IDENTITY_ATTR)
  if stored is None:
    study.set_user_attr(IDENTITY_ATTR, json.dumps(ident, sort_keys=True))
  else:
    old = {'study_name': name, **json.loads(stored)}
    check_same(old, ident, f'study {name!r} ({storage_description})')
  if study.direction.name.lower() != direction:
    raise SweepChangedError(f'study {name!r} was created to {study.direction.name.lower()}')
  os.makedirs(workdir, exist_ok=True)
  record = {
      'study_name': name,
      'storage': storage_description,
      'identity': ident,
      'num_trials': config.num_trials,
      'total_runs': spec_lib.total_runs(config, dims),
      'dims': [d.__dict__ for d in dims],
  }
  files.write_atomic(sweep_file, json.dumps(record, indent=2, sort_keys=True))
  return study


def progress(study: optuna.Study) -> tuple[int, list[int]]:
  """(finished trials, numbers of the RUNNING trials)."""
  trials = study.get_trials(deepcopy=False)
  running = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
  return sum(t.state.is_finished() for t in trials), running


def progress_line(trials: Sequence[optuna.trial.FrozenTrial], total: int) -> str:
  """The line a worker writes after each trial, on the whole sweep (every worker's trials):
  'sweep: K of TOTAL runs finished' and, once a finished run has a training time (the user
  attribute 'wall_s'; a run taken with --reuse has the time it took there), the runs left and
  their training time at the finished runs' mean, summed over runs (two workers: about half
  that in wall time)."""
  done = [t for t in trials if t.state.is_finished()]
  walls = [t.user_attrs['wall_s'] for t in done if t.user_attrs.get('wall_s')]
  left = max(total - len(done), 0)
  out = f'sweep: {len(done)} of {total} runs finished'
  if walls and left:
    mean = sum(walls) / len(walls)
    out += (
        f'; {left} left, about {left * mean / 3600:.1f} h of training summed over runs at the '
        f'mean of {len(walls)} finished ({mean / 60:.1f} min)'
    )
  return out


def objective_from_history(
    history: list[dict[str, Any]], metric: str, direction: str
) -> tuple[float, int] | None:
  """(value, step) of the best `metric` in a run's metrics.jsonl (eval/... over all
  evaluations; test/... is logged once); None if it was never logged."""
  points = []
  for h in history:
    if metric in h and 'checkpoint' not in h:  # not the lines of `run.py eval`
      try:
        points.append((float(h[metric]), int(h['step'])))
      except (TypeError, ValueError):
        continue
  points = [(v, s) for v, s in points if v == v]  # drop NaN
  if not points:
    return None
  if direction == 'maximize':
    return max(points, key=lambda p: (p[0], -p[1]))
  return min(points, key=lambda p: (p[0], p[1]))
