"""One sweep worker: takes trials from the study until every run of the sweep has finished.

Each trial is an ordinary `run.py train` run in DIR/trials/<number>/ (exact resume,
checkpoints, metrics.jsonl, plots). The next trial is, in order of preference:
  1. an interrupted trial (RUNNING in the study, but its worker is gone: claims.py): resumed
     from its own latest checkpoint, keeping its number, point and seed - never re-run;
  2. a waiting repeat (another seed of a point);
  3. a new point from the sampler.
Choosing the next trial happens under DIR/.ask.lock, so that workers on one machine never take
the same trial or overshoot the number of runs. With every run started, a worker waits while
other workers' trials run (it takes over any whose worker goes), and leaves when none is
RUNNING: a sweep is never "complete" while a trial runs.

How a trial ends (failures.py): COMPLETE, PRUNED, FAIL with its reason (a failure of the point:
the sweep goes on), or put back (a failure of the environment: the trial stays RUNNING with its
lock free and the worker stops with an error). A trial that another worker took over or
finished meanwhile is given up quietly.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from typing import Any

import ml_collections
import optuna
from absl import logging

from experiments.sweep import claims
from experiments.sweep import failures
from experiments.sweep import space as space_lib
from experiments.sweep import spec as spec_lib
from experiments.sweep import study as study_lib
from experiments.core.task import ConfigError, RunError

TrialState = optuna.trial.TrialState
trial_dir = claims.trial_dir
POLL_S = 2.0  # how often a worker with nothing to start looks at the others' trials
PROGRESS_S = 60.0  # a trial's progress line (step, objective) at most this often
# The statistics of a finished training run, each kept as a trial user attribute.
RUN_STATS = ('wall_s', 'trained_steps', 'steps', 'steps_per_s', 'num_params')


class _Lost(Exception):
  """The trial was finished or taken over by another worker."""


def _latest_step(tdir: str) -> int:
  ckpt = os.path.join(tdir, 'checkpoints')
  steps = [int(n) for n in os.listdir(ckpt) if n.isdigit()] if os.path.isdir(ckpt) else []
  return max(steps, default=0)


class Worker:
  """Runs trials of one sweep in this process (one device set, one trial at a time)."""

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      dims: list[space_lib.Dimension],
      study: optuna.Study,
      workdir: str,
      name: str = 'worker',
      shared_dir: bool = True,
      reuse: tuple[str, ...] = (),
  ):
    self.config = config
    self.dims = dims
    self.study = study
    self.workdir = workdir
    self.name = name
    self.shared_dir = shared_dir  # the journal file: every worker of the study uses this DIR
    self.reuse = reuse  # other sweeps' dirs whose finished runs are taken (twins.py)
    self.total = spec_lib.total_runs(config, dims)
    self.host = socket.gethostname()
    self.stop_signal: int | None = None
    self.drain_signal: int | None = None  # SIGUSR1: finish the current trial, start no other
    self._current: optuna.Trial | None = None
    self._beat = threading.Event()

  def log(self, message: str) -> None:
    print(f'[{self.name}] {message}', flush=True)

  # ---- choosing the next trial ----------------------------------------------------------

  def _next_trial(self) -> tuple[optuna.Trial, int, bool] | list[int] | None:
    """(trial, fd of its lock, resumed); else the numbers of the RUNNING trials of live workers
    when every run has been started; None when the sweep has finished."""
    os.makedirs(os.path.join(self.workdir, claims.TRIALS_DIR), exist_ok=True)
    with claims.flock(os.path.join(self.workdir, '.ask.lock')):
      trials = self.study.get_trials(deepcopy=False)
      running = []
      for t in trials:
        if t.state == TrialState.RUNNING:
          fd = claims.take_over(t, self.workdir, self.shared_dir)
          if fd is None:
            running.append(t.number)
            continue
          # A live Trial for a RUNNING one needs its storage id: Optuna has no public way.
          trial = optuna.Trial(self.study, t._trial_id)  # pylint: disable=protected-access
          self._claim(trial)
          return trial, fd, True
      waiting = any(t.state == TrialState.WAITING for t in trials)
      if len(trials) >= self.total and not waiting:
        return running or None
      trial = self.study.ask()
      fd = claims.lock_trial(self.workdir, trial.number)
      assert fd is not None, f'trial {trial.number} is locked by another worker'
      self._claim(trial)
      self._point(trial)  # sample and record the point (and enqueue its repeats) under the lock
      return trial, fd, False

  def _claim(self, trial: optuna.Trial) -> None:
    trial.set_user_attr('host', self.host)
    trial.set_user_attr('pid', os.getpid())
    trial.set_user_attr('heartbeat', time.time())
    trial.set_user_attr('workdir', os.path.abspath(trial_dir(self.workdir, trial.number)))

  def _point(self, trial: optuna.Trial) -> tuple[dict[str, Any], int]:
    """The trial's values and seed; a new random/TPE point enqueues its other seeds."""
    if self.config.sampler != 'grid' and len(trial.params) < len(self.dims):
      # A point not drawn yet is drawn by a sampler seeded with its trial number (study.py).
      self.study.sampler = study_lib.make_sampler(self.config, self.dims, trial.number)
    values = space_lib.suggest(trial, self.dims)
    seeds = spec_lib.seeds(self.config)
    if self.config.sampler == 'grid':
      seed = trial.suggest_categorical('seed', seeds) if len(seeds) > 1 else seeds[0]
    else:
      seed = trial.user_attrs.get('seed', seeds[0])
      if 'repeat_of' not in trial.user_attrs and not trial.user_attrs.get('repeats_enqueued'):
        for s in seeds[1:]:
          self.study.enqueue_trial(values, user_attrs={'seed': s, 'repeat_of': trial.number})
        trial.set_user_attr('repeats_enqueued', True)
    if 'seed' not in trial.user_attrs:
      trial.set_user_attr('seed', seed)
    return values, seed

  # ---- running one trial ----------------------------------------------------------------

  def _heartbeat(self) -> None:
    while not self._beat.wait(claims.HEARTBEAT_S):
      trial = self._current
      if trial is not None:
        try:
          trial.set_user_attr('heartbeat', time.time())
        except Exception as e:  # pylint: disable=broad-except  # a missed beat is harmless
          logging.warning('heartbeat of trial %d failed: %s', trial.number, e)

  def _lost(self, trial: optuna.Trial) -> bool:
    """Whether another worker finished the trial or took it over (a stale heartbeat)."""
    # Optuna has no public lookup by number; trial numbers index get_trials (optuna#4828).
    t = self.study.get_trials(deepcopy=False)[trial.number]
    mine = (t.user_attrs.get('host'), t.user_attrs.get('pid')) == (self.host, os.getpid())
    return t.state.is_finished() or not mine

  def _fail(self, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr('fail_reason', reason[:2000])
    self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    self.log(f'trial {trial.number} FAILED: {reason.splitlines()[0]}')

  def run_trial(self, trial: optuna.Trial, resumed: bool) -> None:
    """Runs the trial and tells the study how it ended; a trial another worker finished or
    took over meanwhile is given up quietly."""
    try:
      self._run_trial(trial, resumed)
    except (_Lost, optuna.exceptions.UpdateFinishedTrialError):
      self.log(f'trial {trial.number} was finished or taken over by another worker; gave it up')
      return
    if self.stop_signal is None:  # where the whole sweep stands
      try:
        self.log(study_lib.progress_line(self.study.get_trials(deepcopy=False), self.total))
      except Exception as e:  # pylint: disable=broad-except  # a progress line is not worth a crash
        logging.warning('no progress line: %s', e)

  def _run_trial(self, trial: optuna.Trial, resumed: bool) -> None:
    import jax  # pylint: disable=g-import-not-at-top
    from experiments.core import configuration  # pylint: disable=g-import-not-at-top
    from experiments.sweep import variants  # pylint: disable=g-import-not-at-top

    values, seed = self._point(trial)
    tdir = trial_dir(self.workdir, trial.number)
    shown = ', '.join(
        f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in values.items()
    )
    verb = 'resumed from its checkpoint' if resumed and _latest_step(tdir) else 'started'
    if not resumed and os.path.exists(os.path.join(tdir, 'config.json')):
      self._fail(
          trial,
          f'{tdir} already holds a run that this study has no record of (was the study storage '
          'replaced?); move it aside to run this trial',
      )
      return
    self.log(f'trial {trial.number} {verb}: {shown}, seed={seed} ({tdir})')
    config = variants.expand(self.config, space_lib.apply(self.config.base, values))
    config.seed = seed
    try:
      configuration.validate(config, jax.device_count())
    except ConfigError as e:
      self._fail(trial, f'invalid point: {e}')
      return
    if self.stop_signal is not None:  # a signal during the set-up: train no step
      self.log(f'trial {trial.number} stopped before training; rerun to resume')
      return
    if self.shared_dir and not _latest_step(tdir) and self._adopt(trial, config, tdir):
      return
    start_step, t0 = _latest_step(tdir), time.perf_counter()
    self._current = trial
    try:
      result = self._train(trial, config, tdir)
    except (_Lost, optuna.exceptions.UpdateFinishedTrialError):
      raise
    except Exception as e:  # pylint: disable=broad-except  # sorted out below
      if failures.is_environment(e):
        self._put_back(trial)
        raise failures.EnvironmentFailure(
            f'trial {trial.number} could not run: {failures.reason(e)}. It was put back and '
            'runs again (from its checkpoint) with the same command once this is fixed.'
        ) from None
      if isinstance(e, RunError):  # NaN loss, bad checkpoint, ...: its message says it all
        self._fail(trial, str(e))
        return
      logging.error('trial %d crashed:\n%s', trial.number, traceback.format_exc())
      self._fail(trial, f'{type(e).__name__}: {e}')  # a crash of the point
      return
    finally:
      self._current = None
    self._finish(trial, result, start_step, time.perf_counter() - t0, tdir)

  def _adopt(self, trial: optuna.Trial, config: ml_collections.ConfigDict, tdir: str) -> bool:
    """A finished run of exactly this config (twins.py: a tuned ablation's tune stage, or a
    --reuse sweep; the same variant, rate and seed) becomes this trial: its files are copied
    here and its objective and statistics recorded, instead of training it again. False if
    there is none."""
    from experiments.core import metric_logging  # pylint: disable=g-import-not-at-top
    from experiments.sweep import twins  # pylint: disable=g-import-not-at-top

    found = twins.finished_twin(self.workdir, config, self.reuse)
    if found is None:
      return False
    twin, attrs = found
    best = study_lib.objective_from_history(
        metric_logging.read_history(twin), self.config.objective, self.config.direction
    )
    if best is None:
      return False
    shutil.copytree(
        twin, tdir, ignore=shutil.ignore_patterns('.worker', '*.lock'), dirs_exist_ok=True
    )
    for key in RUN_STATS:
      if key in attrs:
        trial.set_user_attr(key, attrs[key])
    trial.set_user_attr('objective_step', best[1])
    trial.set_user_attr(twins.ADOPTED_FROM, twin)
    self.study.tell(trial, best[0], skip_if_finished=True)
    self.log(
        f'trial {trial.number} COMPLETE: {self.config.objective}={best[0]:.6g} at step '
        f'{best[1]}: the same run as {twin} (same config and seed), taken, not trained again'
    )
    return True

  def _train(self, trial: optuna.Trial, config: ml_collections.ConfigDict, tdir: str):
    """loop.train_and_evaluate with pruning; with no readable checkpoint, from step 0."""
    from experiments.core import checkpointing, loop  # pylint: disable=g-import-not-at-top

    objective = self.config.objective
    shown = [-math.inf]  # when the last progress line was written

    def on_evaluation(step: int, metrics: dict[str, float]) -> bool:
      if self._lost(trial):
        raise _Lost()
      value = metrics.get(objective)
      if value is None or not math.isfinite(value):
        return False
      if time.monotonic() - shown[0] >= PROGRESS_S:
        shown[0] = time.monotonic()
        self.log(
            f'trial {trial.number}: step {step:,} of {config.num_train_steps:,}, '
            f'{objective}={value:.5g}'
        )
      trial.report(value, step)
      return trial.should_prune()

    def run():
      return loop.train_and_evaluate(
          config, tdir, on_evaluation=on_evaluation, stop_requested=lambda: self.stop_signal
      )

    try:
      return run()
    except checkpointing.UnreadableCheckpointError as e:
      aside = os.path.join(tdir, f'checkpoints.unreadable.{int(time.time())}')
      shutil.move(loop.checkpoint_dir(tdir), aside)
      self.log(
          f'trial {trial.number}: no readable checkpoint ({str(e).splitlines()[-1].strip()}); '
          f'moved them to {aside} and restarted the trial from step 0'
      )
      return run()

  def _put_back(self, trial: optuna.Trial) -> None:
    """Leaves the trial RUNNING for another worker: its lock is released by the caller, and a
    zero heartbeat lets the workers of other sweep dirs take it over at once."""
    try:
      trial.set_user_attr('heartbeat', 0.0)
    except Exception as e:  # pylint: disable=broad-except  # its lock still frees it here
      logging.warning('could not mark trial %d as put back: %s', trial.number, e)

  def _finish(self, trial: optuna.Trial, result, start_step: int, seconds: float, tdir: str):
    """Records a finished training run: its statistics and state (or its interruption)."""
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top

    wall = trial.user_attrs.get('wall_s', 0.0) + seconds
    trained = trial.user_attrs.get('trained_steps', 0) + result.step - start_step
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(result.state.params))
    steps_per_s = trained / wall if wall > 0 else 0.0
    for key, value in zip(RUN_STATS, (wall, trained, result.step, steps_per_s, params)):
      trial.set_user_attr(key, value)
    if result.interrupted:
      self.stop_signal = result.interrupted
      self.log(
          f'trial {trial.number} stopped at step {result.step} (checkpointed); rerun to resume'
      )
      return
    if result.stopped_early:
      trial.set_user_attr('pruned_at_step', result.step)
      self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
      self.log(f'trial {trial.number} PRUNED at step {result.step}')
      return
    from experiments.core import metric_logging  # pylint: disable=g-import-not-at-top

    objective = self.config.objective
    best = study_lib.objective_from_history(
        metric_logging.read_history(tdir), objective, self.config.direction
    )
    if best is None:
      names = sorted({k for h in metric_logging.read_history(tdir) for k in h if '/' in k})
      self._fail(trial, f'objective {objective!r} was never logged')
      raise study_lib.ObjectiveMissingError(
          f'config.objective: {objective!r} is not in {tdir}/metrics.jsonl; logged metrics: '
          f'{names}'
      )
    value, step = best
    trial.set_user_attr('objective_step', step)
    self.study.tell(trial, value, skip_if_finished=True)  # (a worker taken for dead may finish)
    self.log(
        f'trial {trial.number} COMPLETE: {objective}={value:.6g} at step {step} '
        f'({wall:.1f} s, {result.step} steps)'
    )
    if result.stop_requested:  # the signal came during the final evaluation: stop here
      self.stop_signal = result.stop_requested
      self.log(f'{signal.Signals(result.stop_requested).name}: stopping; no further trial')

  def _on_signal(self, signum, frame):  # pylint: disable=unused-argument
    self.stop_signal = signum
    self.log(f'{signal.Signals(signum).name}: stopping after the current trial is checkpointed')

  def _on_drain(self, signum, frame):  # pylint: disable=unused-argument
    self.drain_signal = signum
    self.log(f'{signal.Signals(signum).name}: finishing the current trial, then stopping')

  def run(self) -> int:
    """Runs trials until the sweep has finished or a signal stops it; the exit code. SIGTERM /
    SIGINT checkpoint the running trial and stop; SIGUSR1 lets it finish, then stops (both:
    128 + signal). Raises failures.EnvironmentFailure (its trial put back)."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
      for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, self._on_signal)
      previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_drain)
    beat = threading.Thread(target=self._heartbeat, daemon=True)
    beat.start()
    told_waiting: list[int] = []
    try:
      while self.stop_signal is None:
        if self.drain_signal is not None:  # the trial it was running (if any) has ended
          self.stop_signal = self.drain_signal
          self.log(f'{signal.Signals(self.drain_signal).name}: stopped; no further trial')
          break
        picked = self._next_trial()
        if picked is None:
          break
        if isinstance(picked, list):  # every run started; others still run
          if picked != told_waiting:
            shown = ', '.join(map(str, picked))
            self.log(f'every run has started; waiting for trial(s) {shown} of other workers')
            told_waiting = picked
          time.sleep(POLL_S)
          continue
        trial, fd, resumed = picked
        try:
          self.run_trial(trial, resumed)
        finally:
          os.close(fd)
    finally:
      self._beat.set()
      for sig, handler in previous.items():
        signal.signal(sig, handler)
    return 128 + self.stop_signal if self.stop_signal else 0
