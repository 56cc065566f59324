"""Input lines of the text verbs (`translate`, `generate`): sentences from argv, else stdin,
with a readable problem for each line that is not valid UTF-8."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator


def input_lines(argv: list[str]) -> Iterator[tuple[str | None, str]]:
  """(text or None, problem) per input line; argv sentences, else stdin ('-' = stdin)."""
  if argv and argv != ['-']:
    for arg in argv:
      try:
        arg.encode('utf-8')  # argv bytes that are not UTF-8 arrive as lone surrogates
        yield arg, ''
      except UnicodeEncodeError:
        raw = os.fsencode(arg)
        yield None, utf8_problem(raw)
    return
  for raw in sys.stdin.buffer:
    raw = raw.rstrip(b'\n').rstrip(b'\r')
    try:
      yield raw.decode('utf-8'), ''
    except UnicodeDecodeError:
      yield None, utf8_problem(raw)


def utf8_problem(raw: bytes) -> str:
  try:
    raw.decode('utf-8')
    return ''
  except UnicodeDecodeError as e:
    return f'not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}: {e.reason})'
