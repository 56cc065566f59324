"""Who runs a trial: its lock, DIR/trials/<number>/.worker, is the truth.

The worker running a trial holds an flock on the trial's `.worker` file; the OS releases it when
that process ends in any way (kill -9 included). So a RUNNING trial whose lock is free has no
worker - whatever its recorded pid, host or heartbeat say (a pid is reused, a container renamed,
a worker died between asking for the trial and claiming it) - and is taken over at once.

A RUNNING trial of another sweep dir (a database study shared by machines that each have their
own DIR) has its lock out of reach: it is taken over when its heartbeat (a user attribute its
worker refreshes every HEARTBEAT_S) is older than STALE_S, then from scratch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

import optuna

from experiments.core.task import RunError

HEARTBEAT_S = 60.0
STALE_S = 600.0
TRIALS_DIR = 'trials'


def trial_dir(workdir: str, number: int) -> str:
  return os.path.join(workdir, TRIALS_DIR, str(number))


@contextlib.contextmanager
def flock(path: str, timeout_s: float = 600.0):
  """Holds an exclusive flock on `path` (waiting at most `timeout_s`)."""
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


def try_lock(path: str) -> int | None:
  """An fd holding an exclusive flock on `path`, or None if another process holds it."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd
  except BlockingIOError:
    os.close(fd)
    return None


def lock_trial(workdir: str, number: int) -> int | None:
  return try_lock(os.path.join(trial_dir(workdir, number), '.worker'))


def take_over(
    t: optuna.trial.FrozenTrial, workdir: str, shared_dir: bool, now: float | None = None
) -> int | None:
  """The fd of `t`'s lock when RUNNING trial `t` has no worker (see the module docstring);
  None while its worker lives. `shared_dir`: every worker of the study uses this DIR (the
  journal file), so every trial's lock is here."""
  own = os.path.abspath(trial_dir(workdir, t.number))
  if shared_dir or t.user_attrs.get('workdir') == own:
    return lock_trial(workdir, t.number)
  beat = t.user_attrs.get('heartbeat')
  if beat is None:
    beat = t.datetime_start.timestamp() if t.datetime_start else 0.0
  if (time.time() if now is None else now) - beat > STALE_S:
    return lock_trial(workdir, t.number)
  return None
