"""experiments/core/checkpointing.py: retention, fallback, shape mismatch, workdir lock."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.core import checkpointing


def _state(value, width=4):
  return {
      'params': {
          'dense': {'kernel': jnp.full((3, width), float(value)), 'bias': jnp.zeros((width,))}
      },
      'step': jnp.int32(value),
  }


def _abstract(width=4):
  return jax.eval_shape(lambda: _state(0, width))


def test_keeps_last_n_and_the_best(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2, best_metric='eval/accuracy')
  for step, acc in [(1, 0.5), (2, 0.9), (3, 0.6), (4, None), (5, 0.7)]:
    ckpt.save(
        step, _state(step), {'step': step}, metrics=None if acc is None else {'eval/accuracy': acc}
    )
  assert ckpt.all_steps() == [2, 4, 5]  # last two + best
  assert ckpt.best_step() == 2
  assert ckpt.resolve('best') == 2 and ckpt.resolve('latest') == 5 and ckpt.resolve(4) == 4
  with pytest.raises(checkpointing.CheckpointNotFoundError, match='no checkpoint for step 3'):
    ckpt.resolve(3)
  step, state, data = ckpt.restore('best', _abstract())
  assert step == 2 and data == {'step': 2}
  np.testing.assert_array_equal(state['params']['dense']['kernel'], np.full((3, 4), 2.0))
  ckpt.close()


def test_min_mode(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=1, best_metric='eval/loss', best_mode='min')
  for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0)]:
    ckpt.save(step, _state(step), {}, metrics={'eval/loss': loss})
  assert ckpt.best_step() == 2 and ckpt.all_steps() == [2, 3]


def test_saving_an_existing_step_is_a_no_op(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1), {})
  ckpt.save(1, _state(99), {})
  _, state, _ = ckpt.restore(1, _abstract())
  assert int(state['step']) == 1


def test_unreadable_latest_falls_back_with_a_warning(tmp_path, caplog):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3)
  for step in (1, 2):
    ckpt.save(step, _state(step), {'step': step})
  # Truncate every file of step 2's state (as a disk-full / half-copied checkpoint).
  for root, _, files in os.walk(tmp_path / '2' / 'state'):
    for name in files:
      open(os.path.join(root, name), 'w').close()
  # A half-written save (orbax's temporary directory) is never listed as a step.
  os.makedirs(tmp_path / '3.orbax-checkpoint-tmp' / 'state')
  reopened = checkpointing.Checkpointer(str(tmp_path), keep=3)
  assert reopened.all_steps() == [1, 2]
  with caplog.at_level(logging.WARNING):
    step, state, data = reopened.restore('latest', _abstract())
  assert step == 1 and data == {'step': 1}
  assert int(state['step']) == 1
  assert any('unreadable' in r.getMessage() and '/2' in r.getMessage() for r in caplog.records)
  # An explicitly requested step does not fall back.
  with pytest.raises(checkpointing.UnreadableCheckpointError, match='no readable checkpoint'):
    reopened.restore(2, _abstract())


def test_shape_mismatch_lists_the_leaves(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1, width=4), {})
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    ckpt.restore('latest', _abstract(width=5))
  message = str(e.value)
  assert 'params/dense/kernel: checkpoint (3, 4) vs this model (3, 5)' in message
  assert 'params/dense/bias: checkpoint (4,) vs this model (5,)' in message
  assert 'step' not in message.split('shapes:')[1]  # unchanged leaves are not listed


def test_shape_mismatches_reports_missing_leaves():
  stored = {'a': np.zeros((2,)), 'b': np.zeros((1,))}
  target = {'a': np.zeros((2,)), 'c': np.zeros((3,))}
  assert checkpointing.shape_mismatches(stored, target) == [
      '  b: in checkpoint (1,), not in this model',
      '  c: not in checkpoint, this model (3,)',
  ]


def test_no_checkpoints(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'c'))
  assert ckpt.latest_step() is None
  with pytest.raises(checkpointing.CheckpointNotFoundError, match='no checkpoints'):
    ckpt.restore('latest', _abstract())


def test_workdir_lock(tmp_path):
  with checkpointing.WorkdirLock(str(tmp_path)):
    with pytest.raises(
        checkpointing.WorkdirLockedError, match=f'in use by another run \\(pid {os.getpid()}\\)'
    ):
      with checkpointing.WorkdirLock(str(tmp_path)):
        pass
  with checkpointing.WorkdirLock(str(tmp_path)):  # released
    pass
