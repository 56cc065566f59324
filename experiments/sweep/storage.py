"""Where a sweep's Optuna study lives.

Default: a journal file `DIR/journal.log` (journal_file.py) - no server; every worker process
on this machine appends to it under an flock, which the OS releases when a process dies (even
with kill -9), so a killed worker never leaves a stale lock behind.

`--storage URL` (or $TRANSFORMER_SWEEP_STORAGE): any database URL Optuna supports, e.g.
postgresql://USER@HOST:5432/DB, shared by workers on many machines. Give the password through
libpq's own channels - $PGPASSWORD or ~/.pgpass (`HOST:PORT:DB:USER:PASSWORD`, mode 0600) - not
in the URL. A password in the URL still works but is masked ('***') in every log line, file
and error message this package writes.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse

import optuna

from experiments.sweep import journal_file
from experiments.core.task import RunError

ENV = 'TRANSFORMER_SWEEP_STORAGE'
JOURNAL_FILE = 'journal.log'
SCHEMA_TRIES = 3  # opening a database whose schema another worker is creating at once
StorageError = journal_file.StorageError


# Query parameters that carry a credential (libpq's password / sslpassword, tokens, keys).
_SECRET_KEY = re.compile(r'pass|pwd|secret|token|key|auth', re.IGNORECASE)


def _split(url: str) -> tuple[str, str | None, str, str] | None:
  """(scheme://, user info or None, rest of the authority and path, ?query), or None without
  '://'. The user info ends at the LAST '@' before the query, so a password with an unescaped
  '@' is all of it."""
  head, sep, rest = url.partition('://')
  if not sep:
    return None
  body, q, query = rest.partition('?')
  userinfo, at, hostpath = body.rpartition('@')
  return head + sep, userinfo if at else None, hostpath, q + query


def _is_secret(pair: str) -> bool:
  key, eq, value = pair.partition('=')
  return bool(eq and value and _SECRET_KEY.search(key))


def _secrets(url: str) -> list[str]:
  """Every credential in `url`: as written, percent-decoded and percent-encoded."""
  parts = _split(url)
  if parts is None:
    return []
  _, userinfo, _, query = parts
  found = [userinfo.split(':', 1)[1]] if userinfo and ':' in userinfo else []
  found += [p.partition('=')[2] for p in query[1:].split('&') if _is_secret(p)]
  decoded = [urllib.parse.unquote_plus(s) for s in found]
  found += decoded + [urllib.parse.quote(s, safe='') for s in decoded]
  return sorted({s for s in found if s}, key=len, reverse=True)


def mask(url: str) -> str:
  """`url` with every credential (the password of the user info, escaped or not, and secret
  query parameters such as ?password=...) replaced by '***'."""
  parts = _split(url)
  if parts is None:
    return url
  head, userinfo, hostpath, query = parts
  if userinfo is not None:
    head += (userinfo.split(':', 1)[0] + ':***' if ':' in userinfo else userinfo) + '@'
  if query:
    query = '?' + '&'.join(
        p.partition('=')[0] + '=***' if _is_secret(p) else p for p in query[1:].split('&')
    )
  return head + hostpath + query


def scrub(text: str, url: str | None) -> str:
  """`text` (e.g. an exception message) without any credential of `url`."""
  if url:
    text = text.replace(url, mask(url))
    for secret in _secrets(url):
      text = text.replace(secret, '***')
  return text


def normalize(url: str) -> str:
  """`url` with its password percent-escaped (an unescaped '@' in it would otherwise end the
  user info early in SQLAlchemy's parser and leave part of the password in the host name)."""
  parts = _split(url)
  if parts is None or not parts[1] or ':' not in parts[1]:
    return url
  head, userinfo, hostpath, query = parts
  user, password = userinfo.split(':', 1)
  escaped = urllib.parse.quote(urllib.parse.unquote(password), safe='')
  return f'{head}{user}:{escaped}@{hostpath}{query}'


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
      return journal_file.open_journal(path)
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
  import sqlalchemy.exc  # pylint: disable=g-import-not-at-top  # optuna's RDB dependency

  reason = 'the database schema could not be created (unique-key conflicts)'
  for attempt in range(1, SCHEMA_TRIES + 1):
    try:
      return optuna.storages.RDBStorage(_with_driver(normalize(url)), engine_kwargs=engine_kwargs)
    except sqlalchemy.exc.IntegrityError:
      # Workers started together create the tables at the same moment: the loser's insert
      # violates a unique key the winner just wrote. The schema is there now: open it again.
      if attempt < SCHEMA_TRIES:
        time.sleep(0.5)
    except Exception as e:  # pylint: disable=broad-except  # sqlalchemy / driver errors
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      break
  raise StorageError(f'cannot open the sweep storage {mask(url)}: {scrub(reason, url)}') from None
