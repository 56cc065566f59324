"""Tune then compare: every variant of an ablation at its own best learning rate.

An ablation config made with `tuned(sweep, learning_rates)` runs in two stages, each an ordinary
sweep (journal, resume, trial directories) in its own directory:

  DIR/tune     variant x learning_rate grid, `tune.seeds` seed(s) (base seed + 0, ...)
  DIR/compare  every variant at the rate with its best tune-stage objective (mean over the tune
               seeds), `seeds` seeds each; a run at a tune seed is the tune stage's run at that
               rate (the same config and seed): taken from DIR/tune, not trained again
               (twins.py; the worker copies its files and results)

  python run.py sweep --config configs/ablations/scaling.py:lm --workdir DIR

runs (or resumes) both (experiments/sweep/staged.py). The compare stage is built only from a
finished tune stage (every run COMPLETE, FAIL or PRUNED; a rate that diverged is not chosen),
and the chosen rates are part of its variants, hence of its identity: a tune stage that changed
under the same DIR/compare is an error, never a silent mix. A tuned config itself is not a sweep (variants.check refuses
it): it would run every variant at the base rate.
"""

from __future__ import annotations

import copy
import os
import statistics
from typing import Any

import ml_collections

from experiments.core.task import ConfigError, RunError
from experiments.sweep import files
from experiments.sweep import space as space_lib
from experiments.sweep import variants

FIELD = variants.TUNED  # the sweep-config section of a tuned ablation
RATE = 'learning_rate'  # the tuned base-config field
TUNE_DIR, COMPARE_DIR = 'tune', 'compare'  # the stages' sweep dirs under DIR
TUNE_SUFFIX = '_tune'  # the tune stage's study is the ablation's name + this


class TuneIncompleteError(RunError, ValueError):
  """The tune stage has not finished, so no rate can be chosen yet."""


def tuned(
    config: ml_collections.ConfigDict, learning_rates: tuple[float, ...], seeds: int = 1
) -> ml_collections.ConfigDict:
  """Makes the ablation sweep `config` (ablations.sweep) tune the learning rate per variant over
  `learning_rates` with `seeds` seed(s) before comparing its variants with `config.seeds`."""
  with config.unlocked():
    config[FIELD] = ml_collections.ConfigDict(
        {'learning_rates': tuple(float(r) for r in learning_rates), 'seeds': seeds}
    )
  check(config)
  return config


def is_tuned(config: ml_collections.ConfigDict) -> bool:
  return FIELD in config


def check(config: ml_collections.ConfigDict) -> None:
  """The tune section is sane and no variant sets the tuned rate itself."""
  rates, seeds = tuple(config[FIELD].learning_rates), config[FIELD].seeds
  if not rates or any(not r > 0 for r in rates) or len(set(rates)) != len(rates):
    raise ConfigError(f'{FIELD}.learning_rates', f'must be distinct rates > 0, got {rates}')
  if not isinstance(seeds, int) or seeds < 1:
    raise ConfigError(f'{FIELD}.seeds', f'must be an integer >= 1, got {seeds!r}')
  for name, overrides in variants.table(config).items():
    if RATE in overrides:
      raise ConfigError(
          f'variants.{name}', f'sets {RATE} itself; a tuned ablation chooses it per variant'
      )


def _plain(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  out = copy.deepcopy(config)
  with out.unlocked():
    del out[FIELD]
  return out


def tune_stage(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The first stage's sweep config: the variant x learning-rate grid, the tune seeds."""
  check(config)
  out = _plain(config)
  with out.unlocked():
    out.name = f'{config.name}{TUNE_SUFFIX}' if config.get('name') else ''
    out.seeds = config[FIELD].seeds
    out.space[RATE] = space_lib.grid(*config[FIELD].learning_rates)
  return out


def compare_stage(
    config: ml_collections.ConfigDict, rates: dict[str, float]
) -> ml_collections.ConfigDict:
  """The second stage's sweep config: each variant with its chosen rate (`rates`)."""
  check(config)
  points = variants.table(config)
  missing = sorted(set(points) - set(rates))
  if missing:
    raise ConfigError('variants', f'no tuned learning rate for {missing}')
  out = _plain(config)
  return variants.attach(out, {n: {**o, RATE: rates[n]} for n, o in points.items()})


def stage_dirs(workdir: str) -> tuple[str, str]:
  """(tune stage dir, compare stage dir) of a tuned ablation's DIR."""
  return os.path.join(workdir, TUNE_DIR), os.path.join(workdir, COMPARE_DIR)


def tune_dir_of(compare_dir: str) -> str | None:
  """The tune stage next to a compare stage's sweep dir, None if there is none."""
  parent, name = os.path.split(os.path.normpath(compare_dir))
  tune = os.path.join(parent, TUNE_DIR)
  return tune if name == COMPARE_DIR and files.read_record(tune) is not None else None


def tune_results(trials: list[Any]) -> dict[str, dict[float, list[float]]]:
  """{variant: {rate: [objective of each COMPLETE run]}} of the tune stage's trials (Optuna
  FrozenTrials; a FAIL or PRUNED run's rate gets no value)."""
  out: dict[str, dict[float, list[float]]] = {}
  for t in trials:
    if variants.FIELD not in t.params or RATE not in t.params:
      continue
    runs = out.setdefault(t.params[variants.FIELD], {}).setdefault(float(t.params[RATE]), [])
    if t.state.name == 'COMPLETE' and t.value is not None:
      runs.append(float(t.value))
  return out


def choose(results: dict[str, dict[float, list[float]]], direction: str) -> dict[str, float]:
  """Per variant the rate with the best mean objective (ties: the smaller rate); a variant
  whose every rate failed is an error."""
  sign = -1.0 if direction == 'maximize' else 1.0
  out = {}
  for name, by_rate in results.items():
    done = {r: statistics.fmean(v) for r, v in by_rate.items() if v}
    if not done:
      raise TuneIncompleteError(
          f'variant {name!r}: every tune-stage run failed ({sorted(by_rate)}); no rate to compare'
      )
    out[name] = min(done, key=lambda r: (sign * done[r], r))
  return out


def chosen_rates(
    config: ml_collections.ConfigDict, tune_dir: str, url: str | None = None
) -> dict[str, float]:
  """The rate per variant from the finished tune stage in `tune_dir`."""
  stage = tune_stage(config)
  trials = stage_trials(tune_dir, url)
  total = len(variants.table(stage)) * len(config[FIELD].learning_rates) * stage.seeds
  finished = sum(t.state.is_finished() for t in trials)
  if finished < total:
    raise TuneIncompleteError(
        f'{tune_dir}: the tune stage has finished {finished} of {total} runs; run it to the end '
        'before the compare stage'
    )
  return choose(tune_results(trials), stage.direction)


def stage_trials(sweep_dir: str, url: str | None) -> list[Any]:
  """The trials (Optuna FrozenTrials) of the sweep in `sweep_dir` (a tune stage, or any sweep
  dir) from its study."""
  import optuna  # pylint: disable=g-import-not-at-top

  from experiments.sweep import storage  # pylint: disable=g-import-not-at-top

  record = files.read_record(sweep_dir)
  if record is None:
    raise TuneIncompleteError(f'{sweep_dir}: no tune stage there yet; run it first')
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.load_study(
      study_name=record['study_name'], storage=storage.open_storage(url, sweep_dir)
  )
  return study.get_trials(deepcopy=False)
