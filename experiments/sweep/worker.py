"""One sweep worker: takes trials from the study until the sweep has all its runs.

Each trial is an ordinary `run.py train` run in DIR/trials/<number>/ (exact resume,
checkpoints, metrics.jsonl, plots). The next trial is, in order of preference:
  1. an interrupted trial (RUNNING in the study, but its worker is dead): resumed from its own
     latest checkpoint, keeping its number, point and seed - never re-run from scratch;
  2. a waiting repeat (another seed of a point);
  3. a new point from the sampler.
A RUNNING trial is interrupted when its worker's pid is dead on this machine, or its heartbeat
(a user attribute refreshed every HEARTBEAT_S) is older than STALE_S (a worker of another
machine); a worker claims it by taking its flock DIR/trials/<number>/.worker, which the worker
running a trial holds (the OS releases it when that process dies, even with kill -9). Choosing the next trial happens under DIR/.ask.lock, so that
workers on one machine never take the same trial or overshoot the number of runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
import socket
import threading
import time
import traceback
from typing import Any

import ml_collections
import optuna
from absl import logging

from experiments.sweep import space as space_lib
from experiments.sweep import spec as spec_lib
from experiments.sweep import study as study_lib
from experiments.task import ConfigError, RunError

HEARTBEAT_S = 60.0
STALE_S = 600.0
TRIALS_DIR = 'trials'


def trial_dir(workdir: str, number: int) -> str:
  return os.path.join(workdir, TRIALS_DIR, str(number))


@contextlib.contextmanager
def _flock(path: str, timeout_s: float = 600.0):
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  deadline = time.monotonic() + timeout_s
  try:
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if time.monotonic() > deadline:
          raise RunError(
              f'{path} has been locked for {timeout_s:.0f} s by another worker'
          ) from None
        time.sleep(0.05)
    yield
  finally:
    os.close(fd)  # releases the lock


def _try_lock(path: str) -> int | None:
  """An fd holding an exclusive flock on `path`, or None if another process holds it."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd
  except BlockingIOError:
    os.close(fd)
    return None


def _pid_alive(pid: int) -> bool:
  """Whether process `pid` of this machine runs (a zombie, killed but not reaped, does not)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except (OSError, IndexError):
    return True


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
  ):
    self.config = config
    self.dims = dims
    self.study = study
    self.workdir = workdir
    self.name = name
    self.total = spec_lib.total_runs(config, dims)
    self.host = socket.gethostname()
    self.stop_signal: int | None = None
    self._current: optuna.Trial | None = None
    self._beat = threading.Event()

  def log(self, message: str) -> None:
    print(f'[{self.name}] {message}', flush=True)

  # ---- choosing the next trial ----------------------------------------------------------

  def _is_interrupted(self, t: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial whose worker is gone: a dead pid on this machine, or no heartbeat for
    STALE_S (another machine). The caller still needs the trial's flock."""
    attrs = t.user_attrs
    beat = attrs.get('heartbeat') or t.datetime_start.timestamp()
    if time.time() - beat > STALE_S:
      return True
    pid = attrs.get('pid')
    return attrs.get('host') == self.host and pid is not None and not _pid_alive(pid)

  def _next_trial(self) -> tuple[optuna.Trial, int, bool] | None:
    """(trial, fd of its lock, resumed) or None when every run has been started."""
    os.makedirs(os.path.join(self.workdir, TRIALS_DIR), exist_ok=True)
    with _flock(os.path.join(self.workdir, '.ask.lock')):
      trials = self.study.get_trials(deepcopy=False)
      for t in trials:
        if t.state == optuna.trial.TrialState.RUNNING and self._is_interrupted(t):
          fd = _try_lock(os.path.join(trial_dir(self.workdir, t.number), '.worker'))
          if fd is not None:
            trial = optuna.Trial(self.study, t._trial_id)  # pylint: disable=protected-access
            self._claim(trial)
            return trial, fd, True
      waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
      if len(trials) >= self.total and not waiting:
        return None
      trial = self.study.ask()
      fd = _try_lock(os.path.join(trial_dir(self.workdir, trial.number), '.worker'))
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
    while not self._beat.wait(HEARTBEAT_S):
      trial = self._current
      if trial is not None:
        try:
          trial.set_user_attr('heartbeat', time.time())
        except Exception as e:  # pylint: disable=broad-except  # a missed beat is harmless
          logging.warning('heartbeat of trial %d failed: %s', trial.number, e)

  def _fail(self, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr('fail_reason', reason[:2000])
    self.study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    self.log(f'trial {trial.number} FAILED: {reason.splitlines()[0]}')

  def run_trial(self, trial: optuna.Trial, resumed: bool) -> None:
    """Trains the trial's point and tells the study how it ended (unless interrupted)."""
    import jax  # pylint: disable=g-import-not-at-top
    from experiments import configuration, loop  # pylint: disable=g-import-not-at-top

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
    from experiments.sweep import variants  # pylint: disable=g-import-not-at-top

    config = variants.expand(self.config, space_lib.apply(self.config.base, values))
    config.seed = seed
    try:
      configuration.validate(config, jax.device_count())
    except ConfigError as e:
      self._fail(trial, f'invalid point: {e}')
      return
    objective = self.config.objective

    def on_evaluation(step: int, metrics: dict[str, float]) -> bool:
      value = metrics.get(objective)
      if value is None or not math.isfinite(value):
        return False
      trial.report(value, step)
      return trial.should_prune()

    start_step, t0 = _latest_step(tdir), time.perf_counter()
    self._current = trial
    try:
      result = loop.train_and_evaluate(config, tdir, on_evaluation=on_evaluation)
    except RunError as e:  # NaN loss, bad checkpoint, ...: recorded, the sweep goes on
      self._fail(trial, str(e))
      return
    except Exception as e:  # pylint: disable=broad-except  # a crashing point must not stop it
      logging.error('trial %d crashed:\n%s', trial.number, traceback.format_exc())
      self._fail(trial, f'{type(e).__name__}: {e}')
      return
    finally:
      self._current = None
    wall = trial.user_attrs.get('wall_s', 0.0) + time.perf_counter() - t0
    trained = trial.user_attrs.get('trained_steps', 0) + result.step - start_step
    import numpy as np  # pylint: disable=g-import-not-at-top

    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(result.state.params))
    for key, value in (
        ('wall_s', wall),
        ('trained_steps', trained),
        ('steps', result.step),
        ('steps_per_s', trained / wall if wall > 0 else 0.0),
        ('num_params', params),
    ):
      trial.set_user_attr(key, value)
    if result.interrupted:
      self.stop_signal = result.interrupted
      self.log(
          f'trial {trial.number} stopped at step {result.step} (checkpointed); rerun to resume'
      )
      return
    if result.stopped_early:
      trial.set_user_attr('pruned_at_step', result.step)
      self.study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
      self.log(f'trial {trial.number} PRUNED at step {result.step}')
      return
    from experiments import metric_logging  # pylint: disable=g-import-not-at-top

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

  def run(self) -> int:
    """Runs trials until the sweep is complete or a signal stops it; the exit code."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
      for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, self._on_signal)
    beat = threading.Thread(target=self._heartbeat, daemon=True)
    beat.start()
    try:
      while self.stop_signal is None:
        picked = self._next_trial()
        if picked is None:
          break
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
