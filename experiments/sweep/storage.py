"""Where a sweep's Optuna study lives.

Default: a journal file `DIR/journal.log` (optuna.storages.JournalStorage on a
JournalFileBackend) - no server; every worker process on this machine appends to it under an
flock, which the OS releases when a process dies (even with kill -9), so a killed worker never
leaves a stale lock behind.

`--storage URL` (or $TRANSFORMER_SWEEP_STORAGE): any database URL Optuna supports, e.g.
postgresql://USER@HOST:5432/DB, shared by workers on many machines. Give the password through
libpq's own channels - $PGPASSWORD or ~/.pgpass (`HOST:PORT:DB:USER:PASSWORD`, mode 0600) - not
in the URL. A password in the URL still works but is masked ('***') in every log line, file
and error message this package writes.
"""

from __future__ import annotations

import fcntl
import os
import re
import time

import optuna
from optuna.storages import journal
from optuna.storages.journal._file import BaseJournalFileLock  # the documented lock base class

from experiments.task import RunError

ENV = 'TRANSFORMER_SWEEP_STORAGE'
JOURNAL_FILE = 'journal.log'
# A journal append waits at most this long for the lock (seconds).
LOCK_TIMEOUT_S = float(os.environ.get('TRANSFORMER_SWEEP_LOCK_TIMEOUT', '120'))


class StorageError(RunError, RuntimeError):
  """The study storage cannot be opened or used."""


def mask(url: str) -> str:
  """`url` with any password replaced by '***'."""
  return re.sub(r'(://[^:/@]*:)[^@]*@', r'\1***@', url)


def scrub(text: str, url: str | None) -> str:
  """`text` (e.g. an exception message) without the password of `url`."""
  if url:
    m = re.search(r'://[^:/@]*:([^@]*)@', url)
    if m and m.group(1):
      text = text.replace(m.group(1), '***')
    text = text.replace(url, mask(url))
  return text


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


def storage_url(flag_value: str) -> str | None:
  """--storage, else $TRANSFORMER_SWEEP_STORAGE, else None (the journal file)."""
  return flag_value or os.environ.get(ENV) or None


def describe(url: str | None, workdir: str) -> str:
  """Where the study is, safe to print."""
  return mask(url) if url else f'journal file {os.path.join(workdir, JOURNAL_FILE)}'


def _with_driver(url: str) -> str:
  """'postgresql://' means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is there."""
  if not url.startswith('postgresql://'):
    return url
  import importlib.util  # pylint: disable=g-import-not-at-top

  if importlib.util.find_spec('psycopg') is None and importlib.util.find_spec('psycopg2'):
    return 'postgresql+psycopg2://' + url[len('postgresql://') :]
  return url


def open_storage(url: str | None, workdir: str) -> optuna.storages.BaseStorage:
  """The study storage: the journal file of `workdir`, or the database at `url`."""
  if not url:
    path = os.path.join(workdir, JOURNAL_FILE)
    os.makedirs(workdir, exist_ok=True)
    try:
      backend = journal.JournalFileBackend(path, lock_obj=FlockLock(path + '.lock'))
      return optuna.storages.JournalStorage(backend)
    except (ValueError, UnicodeDecodeError) as e:  # optuna replays the log on open
      raise StorageError(
          f'the sweep journal {path} is corrupt ({e}); it was not modified. Move it aside to '
          'start a new sweep in this directory, or repair the broken line.'
      ) from None
  if '://' not in url:
    raise StorageError(f'--storage {mask(url)!r} is not a database URL (e.g. postgresql://...)')
  engine_kwargs = {'pool_pre_ping': True}
  if url.startswith('postgresql'):
    engine_kwargs['connect_args'] = {'connect_timeout': 10}
  try:
    return optuna.storages.RDBStorage(_with_driver(url), engine_kwargs=engine_kwargs)
  except Exception as e:  # pylint: disable=broad-except  # sqlalchemy / driver errors
    reason = scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, url)
    raise StorageError(f'cannot open the sweep storage {mask(url)}: {reason}') from None
