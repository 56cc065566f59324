"""What a sweep trial's resume relies on in experiments/core/checkpointing.py and loop.py: an
unreadable checkpoint is written anew, and a signal its worker got during the trial's set-up
stops training after one step."""

from __future__ import annotations

import os
import signal

import jax
import jax.numpy as jnp

from experiments.core import checkpointing


def _state(value):
  return {'w': jnp.full((3, 4), float(value)), 'step': jnp.int32(value)}


def _corrupt(step_dir: str) -> None:
  """Truncates every file of a checkpoint's state (a disk-full or half-copied checkpoint)."""
  for root, _, files in os.walk(os.path.join(step_dir, 'state')):
    for name in files:
      open(os.path.join(root, name), 'w').close()


def test_an_unreadable_checkpoint_is_replaced_when_its_step_is_saved_again(tmp_path):
  """Resume falls back past the unreadable final step 2 and trains to 2 again: that save used
  to be a no-op (the step 'exists'), so the final checkpoint stayed unreadable for ever."""
  abstract = jax.eval_shape(lambda: _state(0))
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3)
  for step in (1, 2):
    ckpt.save(step, _state(step), {'step': step})
  ckpt.close()
  _corrupt(str(tmp_path / '2'))
  resumed = checkpointing.Checkpointer(str(tmp_path), keep=3)
  step, _, _ = resumed.restore('latest', abstract)
  assert step == 1
  resumed.save(2, _state(2), {'step': 2})
  resumed.save(2, _state(99), {'step': 99})  # once replaced, an existing step is kept
  resumed.close()
  step, state, data = checkpointing.Checkpointer(str(tmp_path), read_only=True).restore(
      'latest', abstract
  )
  assert step == 2 and data == {'step': 2} and int(state['step']) == 2


def test_a_signal_before_the_loop_starts_stops_it_after_one_checkpointed_step(
    tiny_digits_config, tmp_path
):
  """`stop_requested`: the sweep worker's SIGTERM, received during the trial's set-up before
  the loop's own handlers were installed."""
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  result = loop.train_and_evaluate(
      tiny_digits_config(), workdir, stop_requested=lambda: signal.SIGTERM
  )
  assert result.interrupted == signal.SIGTERM and result.step == 1
  assert os.listdir(loop.checkpoint_dir(workdir)) == ['1']
