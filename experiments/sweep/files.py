"""The sweep dir's own files: DIR/sweep.json (what the sweep is) and atomic writes.

Every worker rewrites sweep.json and report.md; each writes its own temporary file (a unique
name next to the target) and renames it over the target, so two writers never race on one
temporary file and a reader sees the old or the new file, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from experiments.core.task import RunError

SWEEP_FILE = 'sweep.json'
_FIELDS = ('study_name', 'storage', 'identity', 'dims', 'total_runs')


class SweepFileError(RunError, ValueError):
  """DIR/sweep.json is unreadable."""


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file of this writer alone."""
  directory, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=directory)
  try:
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # as open() would create it (mkstemp: 0600)
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def read_record(workdir: str) -> dict[str, Any] | None:
  """The contents of DIR/sweep.json, None if there is none; a one-line error if corrupt."""
  path = os.path.join(workdir, SWEEP_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise SweepFileError(
        f'{path} is corrupt ({e}); it was not modified. Restore it (every worker rewrites it '
        'when it starts) or move the sweep dir aside.'
    ) from None
  missing = [k for k in _FIELDS if not isinstance(record, dict) or k not in record]
  if missing:
    raise SweepFileError(f'{path} is not a sweep record (no {", ".join(missing)}); left as is.')
  return record
