"""experiments/core/metric_logging.py: metrics.jsonl, progress lines off a terminal."""

import functools
import json
import logging
import os

import pytest

from experiments.core import metric_logging


def test_append_read_truncate(tmp_path):
  workdir = str(tmp_path)
  assert metric_logging.read_history(workdir) == []
  metric_logging.append_metrics(workdir, 10, {'train/loss': 1.5})
  metric_logging.append_metrics(workdir, 20, {'train/loss': float('nan')})
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 30, "train/lo')  # a line cut by kill -9
  history = metric_logging.read_history(workdir)
  assert history == [{'step': 10, 'train/loss': 1.5}, {'step': 20, 'train/loss': 'nan'}]
  assert metric_logging.truncate_history(workdir, 10) == 1
  assert metric_logging.read_history(workdir) == [{'step': 10, 'train/loss': 1.5}]
  for line in open(os.path.join(workdir, 'metrics.jsonl')):
    json.loads(line)  # valid JSON only


def test_logger_writes_jsonl_tensorboard_and_progress_lines(tmp_path, caplog, request):
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

  # INFO lines, whatever ran before in this worker (a non-primary process's setup lowers it).
  request.addfinalizer(functools.partial(absl_logging.set_verbosity, absl_logging.get_verbosity()))
  absl_logging.set_verbosity(absl_logging.INFO)
  workdir = str(tmp_path)
  logger = metric_logging.MetricLogger(workdir, total_steps=20, start_step=0, log_every_steps=10)
  with caplog.at_level(logging.INFO):
    for step in range(1, 21):
      logger.progress(step, loss=0.5)
  logger.write(20, {'train/loss': 0.5, 'eval/accuracy': 0.9})
  logger.close()
  lines = [r.getMessage() for r in caplog.records if 'steps/s' in r.getMessage()]
  assert len(lines) == 2 and lines[0].startswith('step 10/20 loss 0.5000') and 'ETA' in lines[0]
  assert metric_logging.read_history(workdir) == [
      {'step': 20, 'train/loss': 0.5, 'eval/accuracy': 0.9}
  ]
  assert tensorboard_scalars(str(tmp_path / 'tensorboard')) == {
      'train/loss': [(20, 0.5)],
      'eval/accuracy': [(20, pytest.approx(0.9))],
  }


def tensorboard_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value)]} as TensorBoard itself reads the event files of `logdir`."""
  from tensorboard.backend.event_processing import event_accumulator

  acc = event_accumulator.EventAccumulator(logdir)
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def test_format_seconds():
  assert metric_logging.format_seconds(75) == '1m15s'
  assert metric_logging.format_seconds(3725) == '1h02m05s'
  assert metric_logging.format_seconds(float('inf')) == '?'


def test_quiet_library_logs_drops_orbax_chatter_and_its_no_metrics_warning():
  """On the 'absl' logger (a sweep worker's records go through it to Python's handler): orbax's
  INFO lines and its 'no metrics' warning go; its other warnings and our INFO lines stay."""
  metric_logging.quiet_library_logs()
  absl_logger = logging.getLogger('absl')

  def kept(path, level, message):
    return bool(absl_logger.filter(logging.LogRecord('absl', level, path, 1, message, (), None)))

  orbax = '/site-packages/orbax/checkpoint/checkpoint_manager.py'
  assert not kept(orbax, logging.WARNING, 'Requested `tracked_metric`; did not provide metrics.')
  assert not kept(orbax, logging.INFO, 'Saving checkpoint at step 100')
  assert kept(orbax, logging.WARNING, 'Checkpoint for step 100 already exists.')
  assert kept('/project/experiments/core/loop.py', logging.INFO, 'Resuming from step 100')
