"""Metrics to `metrics.jsonl` + TensorBoard (tensorboardX: no TensorFlow), and a progress bar.

`metrics.jsonl` holds one JSON object per logged step, e.g.
  {"step": 500, "train/loss": 0.12, "train/learning_rate": 0.001, "eval/accuracy": 0.98}
The progress bar is tqdm on a terminal and periodic log lines otherwise.
"""

from __future__ import annotations

import json
import logging as std_logging
import math
import os
import sys
import time
from typing import Any

from absl import logging
import tqdm

METRICS_FILE = 'metrics.jsonl'


def read_history(workdir: str) -> list[dict[str, Any]]:
  """Parsed metrics.jsonl (empty if absent); unparsable lines are skipped."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # a line cut by kill -9
  return out


def truncate_history(workdir: str, step: int) -> int:
  """Drops entries logged after `step` (they are recomputed on resume). Returns how many."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return 0
  history = read_history(workdir)
  keep = [h for h in history if h.get('step', 0) <= step]
  with open(path + '.tmp', 'w') as f:
    f.writelines(json.dumps(h) + '\n' for h in keep)
  os.replace(path + '.tmp', path)
  return len(history) - len(keep)


def append_metrics(workdir: str, step: int, metrics: dict[str, Any]) -> None:
  with open(os.path.join(workdir, METRICS_FILE), 'a') as f:
    f.write(json.dumps({'step': int(step), **_jsonable(metrics)}) + '\n')


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
  out = {}
  for k, v in metrics.items():
    if hasattr(v, 'item'):
      v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
      v = str(v)  # JSON has no NaN/Inf
    out[k] = v
  return out


class MetricLogger:
  """Writes scalars to metrics.jsonl and TensorBoard; shows training progress."""

  def __init__(
      self, workdir: str | None, *, total_steps: int, start_step: int, log_every_steps: int
  ):
    self.workdir = workdir
    self.total_steps = total_steps
    self.log_every_steps = log_every_steps
    self._writer = None
    if workdir is not None:
      import tensorboardX  # pylint: disable=g-import-not-at-top

      # Event files that TensorBoard reads, written without TensorFlow (as MaxText does).
      self._writer = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'), flush_secs=30)
    self._tty = sys.stderr.isatty()
    self._bar = tqdm.tqdm(
        total=total_steps,
        initial=start_step,
        unit='step',
        dynamic_ncols=True,
        disable=not self._tty,
    )
    self._last_time, self._last_step = time.monotonic(), start_step

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    scalars = {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, 'item')
    }
    if self.workdir is not None:
      append_metrics(self.workdir, step, metrics)
      for tag, value in scalars.items():
        self._writer.add_scalar(tag, value, global_step=step)
      self._writer.flush()

  def progress(self, step: int, loss: float | None = None) -> None:
    """Call after `step` steps are done."""
    if self._tty:
      self._bar.update(step - self._bar.n)
      if loss is not None:
        self._bar.set_postfix(loss=f'{loss:.4f}', refresh=False)
      return
    if step % self.log_every_steps and step != self.total_steps:
      return
    now = time.monotonic()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    eta = (self.total_steps - step) / rate if rate > 0 else float('inf')
    loss_str = f' loss {loss:.4f}' if loss is not None else ''
    logging.info(
        'step %d/%d%s  %.2f steps/s  ETA %s',
        step,
        self.total_steps,
        loss_str,
        rate,
        format_seconds(eta),
    )
    self._last_time, self._last_step = now, step

  def close(self) -> None:
    self._bar.close()
    if self._writer is not None:
      self._writer.close()


def format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class _LibraryInfoFilter:
  """Drops INFO/DEBUG records of chatty libraries (orbax logs every save step), and orbax's
  warning that a checkpoint has no metrics: checkpoints between evaluations (periodic, or on a
  signal) carry none on purpose (experiments/core/checkpointing.py)."""

  QUIET = ('/orbax/', '/jax/_src/', '/tensorflow_datasets/', '/etils/')
  EXPECTED = 'Requested `tracked_metric`; did not provide metrics.'

  def filter(self, record) -> bool:
    if '/orbax/' in record.pathname and record.getMessage() == self.EXPECTED:
      return False
    return record.levelno >= 30 or not any(q in record.pathname for q in self.QUIET)


def quiet_library_logs() -> None:
  """Keep our INFO lines (progress, resume, eval) but not the libraries' INFO chatter: on absl's
  handler, and on the 'absl' logger for processes whose absl logging was never set up (sweep
  workers: their records reach Python's default handler)."""
  for where in (logging.get_absl_handler(), std_logging.getLogger('absl')):
    if not any(isinstance(f, _LibraryInfoFilter) for f in where.filters):
      where.addFilter(_LibraryInfoFilter())
