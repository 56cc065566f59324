"""SIGTERM/SIGINT during training: finish the step, save a checkpoint, return (loop.py).

    with StopSignals(pending) as stop:
      ...
      if stop.signum is not None: save and return

A second signal raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from absl import logging


class StopSignals:
  """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and returns. `pending()` names a
  signal its caller received before the handlers were installed (e.g. during a sweep trial's
  set-up): the loop stops after its first step then, too."""

  def __init__(self, pending: Callable[[], int | None] | None = None):
    self._signum: int | None = None
    self._pending = pending
    self._previous = {}

  @property
  def signum(self) -> int | None:
    return self._signum or (self._pending() if self._pending else None)

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # signal handlers can only be installed from the main thread
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self._signum is not None:  # second signal: give up immediately
      raise KeyboardInterrupt
    self._signum = signum
    logging.warning(
        'Received %s; saving a checkpoint and stopping after this step.',
        signal.Signals(signum).name,
    )

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
