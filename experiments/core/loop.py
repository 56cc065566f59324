"""The training loop: resume, checkpoints, periodic eval, logging, signals, NaN stop.

train_and_evaluate(config, workdir)    -> TrainResult   (`run.py train`)
evaluate_checkpoint(workdir, ...)      -> (step, metrics) (`run.py eval`)
restore_for_inference(workdir, ...)    -> Restored       (classify, translate)

A resumed run must be the same experiment (run_identity.py); SIGTERM/SIGINT stop it after a
checkpoint (stop_signals.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from experiments.core import averaging
from experiments.core import checkpointing
from experiments.core import configuration
from experiments.core import curves
from experiments.core import data as data_lib
from experiments.core import early_stopping
from experiments.core import init_from
from experiments.core import metric_logging
from experiments.core import model_size
from experiments.core import optim
from experiments.core import registry
from experiments.core import run_identity
from experiments.core import stop_signals
from experiments.parallel import distributed
from experiments.core.task import ConfigError, RunError, Task
from experiments.core.trainer import Trainer, TrainState, metric_prefix


class NonFiniteLossError(RunError, RuntimeError):
  """The training loss became NaN/Inf."""


class SplitError(RunError, ValueError):
  """An evaluation split the task does not have."""


@dataclasses.dataclass
class TrainResult:
  state: TrainState
  step: int
  workdir: str
  final_metrics: dict[str, float]  # test/... of the final evaluation (empty if interrupted)
  interrupted: int | None = None  # signal number if stopped by SIGTERM/SIGINT
  stopped_early: bool = False  # on_evaluation asked to stop (e.g. a pruned sweep trial)
  summary: str = ''  # where everything is and what to try next
  # SIGTERM/SIGINT that came after the last step (final evaluation, plots): the run is complete,
  # but whoever runs it was asked to stop (a sweep worker starts no further trial)
  stop_requested: int | None = None


@dataclasses.dataclass
class Restored:
  config: ml_collections.ConfigDict
  task: Task
  trainer: Trainer
  state: TrainState
  step: int


def build_run(config: ml_collections.ConfigDict, workdir: str | None) -> tuple[Task, Trainer]:
  task = registry.task_class(config.task)(config)
  distributed.primary_first(lambda: task.setup(workdir))  # process 0 creates the assets
  return task, Trainer(config, task)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, 'checkpoints')


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    on_evaluation: Callable[[int, dict[str, float]], bool] | None = None,
    stop_requested: Callable[[], int | None] | None = None,
) -> TrainResult:
  """Trains (or resumes) `config` in `workdir` (see the module docstring of trainer.py).

  `on_evaluation(step, eval_metrics)` is called after each periodic validation (metrics
  logged, checkpoint saved); returning True stops the run there (`stopped_early`), e.g. a
  sweep trial that its pruner stops. `stop_requested()`: a signal the caller received, which
  stops the run like one received here (checkpoint after the next step).

  Raises WorkdirLockedError, CheckpointMismatchError, NonFiniteLossError.
  """
  os.makedirs(workdir, exist_ok=True)
  with checkpointing.WorkdirLock(workdir), stop_signals.StopSignals(stop_requested) as stop:
    task, trainer = build_run(config, workdir)
    ckpt = checkpointing.Checkpointer(
        checkpoint_dir(workdir),
        keep=config.keep_checkpoints,
        best_metric=f'eval/{task.best_metric}',
        best_mode=task.best_mode,
    )
    try:
      return _run(config, workdir, task, trainer, ckpt, stop, on_evaluation)
    finally:
      ckpt.close()


def final_test_splits(config: ml_collections.ConfigDict, task) -> list[str]:
  """The splits evaluated after training: `config.final_test_splits` (comma-separated) or, when
  it is empty, every test split of the task."""
  names = [s.strip() for s in config.get('final_test_splits', '').split(',') if s.strip()]
  unknown = [s for s in names if s not in task.test_splits]
  if unknown:
    raise ConfigError(
        'final_test_splits',
        f"unknown split(s) {unknown}; choose from {list(task.test_splits)} (comma-separated; '' = all)",
    )
  return names or list(task.test_splits)


def _run(config, workdir, task, trainer, ckpt, stop, on_evaluation=None) -> TrainResult:
  test_splits = final_test_splits(config, task)  # a bad name fails before training
  logging.info(
      'Mesh %s over %d %s device(s); global batch %d.',
      dict(trainer.mesh.shape),
      trainer.mesh.size,
      jax.default_backend(),
      config.batch_size,
  )
  # The next batch is assembled on a background thread while the current step runs.
  source = data_lib.Prefetcher(task.train_source(), end=config.num_train_steps)
  if ckpt.latest_step() is not None:
    step, state, data_state = restore_state(ckpt, 'latest', trainer, config)
    run_identity.check(workdir, config)
    try:
      source.check_state(data_state)
    except ValueError as e:
      raise checkpointing.CheckpointMismatchError(f'{checkpoint_dir(workdir)}: {e}') from None
    dropped = metric_logging.truncate_history(workdir, step) if distributed.is_primary() else 0
    logging.info(
        'Resuming from step %d (%s)%s.',
        step,
        checkpoint_dir(workdir),
        f'; dropped {dropped} metric lines logged after it' if dropped else '',
    )
  else:
    step, state = 0, trainer.init_state()
    # Before anything is written: a source that does not fit stops the run here.
    state = state.replace(
        params=init_from.load(config, state.params, trainer.state_sharding.params)
    )
    size = model_size.record(state.params, config.task)
    logging.info(
        'Model: %s parameters (%s non-embedding).',
        f'{size[model_size.TOTAL]:,}',
        f'{size[model_size.NON_EMBEDDING]:,}',
    )
    if distributed.is_primary():
      metric_logging.truncate_history(workdir, -1)  # every line of an earlier start goes
      metric_logging.append_metrics(workdir, 0, size)  # the run's size, for reports
  if distributed.is_primary():  # process 0 writes files; every process computes
    configuration.write_config(config, workdir)

  total = config.num_train_steps
  patience, min_delta = config.early_stopping_patience, config.early_stopping_min_delta
  # Validation losses so far (resume: those up to the checkpoint) decide early stopping.
  losses = early_stopping.losses_of(metric_logging.read_history(workdir)) if workdir else []
  if early_stopping.should_stop(losses, patience, min_delta):
    total = step  # stopped early before: no more training, finish as at the last step
  pending: list[tuple[int, dict[str, Any]]] = []  # per-step train metrics not yet on host
  last_saved = ckpt.latest_step()
  last_loss = None

  def drain() -> dict[str, float]:
    """Mean train metrics of the pending steps; stops on a non-finite loss."""
    nonlocal last_loss
    if not pending:
      return {}
    host = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, host):
      if not math.isfinite(float(m['train/loss'])):
        raise NonFiniteLossError(
            f'training loss is {float(m["train/loss"])} at step {s}; stopped. The last good '
            f'checkpoint (step {last_saved}) is kept in {checkpoint_dir(workdir)}.'
        )
    pending.clear()
    last_loss = float(host[-1]['train/loss'])
    means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    means['train/learning_rate'] = float(host[-1]['train/learning_rate'])
    return means

  def save(metrics=None):
    nonlocal last_saved
    ckpt.save(step, state, source.state(step), metrics=metrics)
    last_saved = step

  logger = metric_logging.MetricLogger(
      workdir if distributed.is_primary() else None,
      total_steps=total,
      start_step=step,
      log_every_steps=config.log_every_steps,
  )
  try:
    while step < total:
      state, metrics = trainer.train_step(state, source.batch(step))
      step += 1
      pending.append((step, metrics))
      stopping = distributed.any_process(stop.signum is not None)  # all stop at one step
      record: dict[str, float] = {}
      save_now, save_metrics = False, None
      if step % config.log_every_steps == 0 or step == total:
        record.update(drain())
      if step % config.eval_every_steps == 0 or step == total:
        record.update(drain())  # never save a non-finite state
        eval_metrics = _prefixed(trainer.evaluate(state, task.validation_split), 'eval')
        record.update(eval_metrics)
        save_now, save_metrics = True, {k: v for k, v in eval_metrics.items() if math.isfinite(v)}
      elif config.eval_loss_every_steps and step % config.eval_loss_every_steps == 0:
        record.update(drain())
        record.update(_prefixed(trainer.evaluate_loss(state, task.validation_split), 'eval'))
      if early_stopping.LOSS in record:
        losses.append(record[early_stopping.LOSS])
        if early_stopping.should_stop(losses, patience, min_delta) and step < total:
          logging.info('Early stopping at step %d: %s', step, early_stopping.describe(losses))
          record[early_stopping.STOPPED_AT] = step
          total = step
          save_now = True
      if not save_now and (step % config.checkpoint_every_steps == 0 or stopping):
        record.update(drain())
        save_now = True
      # Metrics first, then the checkpoint: a kill in between leaves a record newer than the
      # latest checkpoint, which resume drops and recomputes (never a checkpoint whose metrics
      # are missing).
      if record:
        logger.write(step, record)
      if save_now:
        save(save_metrics)
      logger.progress(step, last_loss)
      stop_early = on_evaluation is not None and save_metrics is not None
      if stop_early and on_evaluation(step, save_metrics) and step < total:
        logging.info('Stopped early at step %d (on_evaluation).', step)
        return TrainResult(state, step, workdir, {}, stopped_early=True)
      if stopping:
        logging.warning(
            'Stopped at step %d; checkpoint saved in %s. Run the same command ' 'to resume.',
            step,
            checkpoint_dir(workdir),
        )
        return TrainResult(state, step, workdir, {}, interrupted=stop.signum or signal.SIGTERM)
  finally:
    source.close()
    logger.close()

  history = metric_logging.read_history(workdir)
  test_prefix = metric_prefix(test_splits[0], task.validation_split) + '/'
  final = {
      k: v
      for h in history
      if h.get('step') == total and 'checkpoint' not in h
      for k, v in h.items()
      if k.startswith(test_prefix)
  }
  if not final:  # not yet done (a finished run re-launched skips this)
    test_state = _averaged_for_test(config, ckpt, trainer, state)
    for split in test_splits:
      final.update(
          _prefixed(
              trainer.evaluate(test_state, split), metric_prefix(split, task.validation_split)
          )
      )
    if distributed.is_primary():
      metric_logging.append_metrics(workdir, total, final)
    history = metric_logging.read_history(workdir)
  if not distributed.is_primary():  # plots and summary: process 0 (inference is local)
    distributed.sync('plots')  # exit together: JAX's shutdown barrier has a time limit
    return TrainResult(
        state,
        step,
        workdir,
        final,
        summary=f'Process {jax.process_index()} done.',
        stop_requested=stop.signum,
    )
  plot_dir = os.path.join(workdir, 'plots')
  os.makedirs(plot_dir, exist_ok=True)
  plot_paths = [
      curves.plot_learning_curves(
          history,
          os.path.join(plot_dir, 'learning_curves.png'),
          best_metric=f'eval/{task.best_metric}',
      )
  ]
  plot_paths += task.make_plots(trainer.context(state), plot_dir, history)
  distributed.sync('plots')
  text = _summary(workdir, step, final, ckpt, plot_paths, task.hints(workdir))
  return TrainResult(state, step, workdir, final, summary=text, stop_requested=stop.signum)


def _averaged_for_test(config, ckpt, trainer: Trainer, state: TrainState) -> TrainState:
  """`state`, or with config.average_last_checkpoints = N > 0 the mean of the last N
  checkpoints (all there are, with a warning, when a run stopped early saved fewer)."""
  n = config.get('average_last_checkpoints', 0)
  if not n:
    return state
  steps = ckpt.all_steps()
  if len(steps) < n:
    logging.warning('Only %d checkpoints to average (asked for %d): %s.', len(steps), n, steps)
  chosen, averaged = averaging.averaged_state(
      steps,
      min(n, len(steps)),
      ckpt.directory,
      lambda s: restore_state(ckpt, s, trainer, config)[1],
  )
  logging.info('Final test evaluation with the mean of the checkpoints of steps %s.', chosen)
  return averaged


def _summary(
    workdir: str, step: int, final: dict[str, float], ckpt, plot_paths: list[str], hints: list[str]
) -> str:
  lines = [f'Finished training at step {step}.']
  lines += [f'  {k} = {v:.4f}' for k, v in sorted(final.items())]
  lines += [
      f'Checkpoints: {checkpoint_dir(workdir)} (latest {ckpt.latest_step()}, '
      f'best {ckpt.best_step()})',
      f'Metrics:     {os.path.join(workdir, metric_logging.METRICS_FILE)}  '
      f'(TensorBoard: tensorboard --logdir {workdir})',
      'Plots:       ' + ', '.join(plot_paths),
      'Try next:',
      f'  python run.py eval --workdir {workdir} --split validation --checkpoint best',
  ]
  lines += [f'  {h}' for h in hints]
  return '\n'.join(lines)


def restore_state(ckpt, which, trainer: Trainer, config) -> tuple[int, TrainState, dict[str, Any]]:
  """ckpt.restore with the config's traced optimizer hyperparameters (experiments/core/optim.py)."""
  step, state, data_state = ckpt.restore(which, trainer.abstract_state)
  opt_state = optim.with_config_hyperparams(config, state.opt_state)
  return step, state.replace(opt_state=opt_state), data_state


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
  return {f'{prefix}/{k}': float(v) for k, v in metrics.items()}


def restore_for_inference(workdir: str, checkpoint: str | int = 'best') -> Restored:
  """Config from workdir/config.json, task (assets reused), trainer, restored state."""
  config = configuration.read_config(workdir)
  ckpt = checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True, best_metric=None)
  if not ckpt.all_steps():
    raise checkpointing.CheckpointNotFoundError(
        f'no checkpoints in {checkpoint_dir(workdir)}; train first.'
    )
  task, trainer = build_run(config, workdir)
  if checkpoint == 'best':  # re-open with the task's metric to find the best step
    ckpt = checkpointing.Checkpointer(
        checkpoint_dir(workdir),
        read_only=True,
        best_metric=f'eval/{task.best_metric}',
        best_mode=task.best_mode,
    )
  step, state, _ = restore_state(ckpt, checkpoint, trainer, config)
  return Restored(config, task, trainer, state, step)


def evaluate_checkpoint(
    workdir: str, checkpoint: str | int = 'latest', split: str | None = None, average_last: int = 0
) -> tuple[int, str, dict[str, float]]:
  """Restores a checkpoint, evaluates `split` (default: the first test split), appends
  the metrics to metrics.jsonl and returns (step, split, prefixed metrics). `average_last` = N
  > 0 evaluates the mean of the last N checkpoints instead (experiments/core/averaging.py)."""
  restored = restore_for_inference(workdir, checkpoint)
  task = restored.task
  split = split or task.test_splits[0]
  if split not in task.eval_splits:
    raise SplitError(f'unknown split {split!r}; choose one of {list(task.eval_splits)}')
  if average_last:
    ckpt = checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True, best_metric=None)
    try:
      steps, state = averaging.averaged_state(
          ckpt.all_steps(),
          average_last,
          ckpt.directory,
          lambda s: restore_state(ckpt, s, restored.trainer, restored.config)[1],
      )
    finally:
      ckpt.close()
    restored = dataclasses.replace(restored, state=state, step=steps[-1])
    checkpoint = f'mean of steps {steps}'
  metrics = _prefixed(
      restored.trainer.evaluate(restored.state, split), metric_prefix(split, task.validation_split)
  )
  metric_logging.append_metrics(workdir, restored.step, {**metrics, 'checkpoint': str(checkpoint)})
  return restored.step, split, metrics
