"""The journal file of a sweep, DIR/journal.log: Optuna's JournalStorage on a JournalFileBackend
whose lock is an flock (released by the OS when its process dies, even with kill -9) and whose
appends first cut off a torn final record.

A record cut short (a full disk, a power loss, a writer killed in mid-write) has no closing
newline; Optuna would glue the next append to it and from then on refuse the whole journal as
corrupt. Under the lock, before every append and when the journal is opened, such a final
record is cut off (kept in journal.log.torn) and that is said once.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from typing import Any

import optuna
from optuna.storages import journal
from optuna.storages.journal._file import BaseJournalFileLock  # the documented lock base class

from experiments.core.task import RunError

# A journal append waits at most this long for the lock (seconds).
LOCK_TIMEOUT_S = float(os.environ.get('TRANSFORMER_SWEEP_LOCK_TIMEOUT', '120'))


class StorageError(RunError, RuntimeError):
  """The study storage cannot be opened or used."""


class FlockLock(BaseJournalFileLock):
  """Journal lock on `path` with flock: released by the OS when its process dies."""

  def __init__(self, path: str, timeout_s: float | None = None):
    self.path = path
    self.timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    self._fd: int | None = None

  def acquire(self) -> bool:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + self.timeout_s
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd
        return True
      except BlockingIOError:
        if time.monotonic() > deadline:
          os.close(fd)
          raise StorageError(
              f'the sweep journal lock {self.path} has been held by another process for '
              f'{self.timeout_s:.0f} s; is a process stuck? (`fuser {self.path}` names it). '
              'Nothing was written.'
          ) from None
        time.sleep(0.05)

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def cut_torn_record(path: str) -> int:
  """Cuts an incomplete final record off the journal at `path` (the caller holds the lock);
  the number of bytes cut."""
  if not os.path.exists(path):
    return 0
  with open(path, 'rb+') as f:
    size = f.seek(0, os.SEEK_END)
    end = size
    while end > 0:  # back to the last newline, a block at a time
      start = max(0, end - 65536)
      f.seek(start)
      newline = f.read(end - start).rfind(b'\n')
      if newline >= 0:
        end = start + newline + 1
        break
      end = start
    if end == size:
      return 0
    f.seek(end)
    torn = f.read()
    with open(path + '.torn', 'ab') as out:
      out.write(torn + b'\n')
    f.truncate(end)
    f.flush()
    os.fsync(f.fileno())
  sys.stderr.write(
      f'run.py: warning: {path} ended in an incomplete record ({len(torn)} bytes, kept in '
      f'{path}.torn), left by a write that was cut short; dropped it and went on.\n'
  )
  return len(torn)


class _Backend(journal.JournalFileBackend):
  """JournalFileBackend whose appends first cut a torn final record off."""

  def __init__(self, path: str):
    self.path = path
    self.lock = FlockLock(path + '.lock')
    super().__init__(path, lock_obj=self.lock)

  def append_logs(self, logs: list[dict[str, Any]]) -> None:
    # Optuna's own append (one write of newline-terminated JSON lines, fsync), under the lock.
    text = ''.join(json.dumps(log, separators=(',', ':')) + '\n' for log in logs)
    self.lock.acquire()
    try:
      cut_torn_record(self.path)
      with open(self.path, 'ab') as f:
        f.write(text.encode('utf-8'))
        f.flush()
        os.fsync(f.fileno())
    finally:
      self.lock.release()


def open_journal(path: str) -> optuna.storages.JournalStorage:
  """The study storage in the journal file `path` (created if missing). Raises ValueError /
  UnicodeDecodeError when a record before the last one is corrupt."""
  backend = _Backend(path)
  backend.lock.acquire()
  try:
    cut_torn_record(path)
  finally:
    backend.lock.release()
  return optuna.storages.JournalStorage(backend)
