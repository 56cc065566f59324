"""Early stopping on the validation loss (experiments/core/early_stopping.py and the loop)."""

import json
import os

import pytest

from experiments.core import configuration, early_stopping, loop
from experiments.core.task import ConfigError


def _reference_stop_index(losses, patience, min_delta):
  """Independent formulation (Keras's callback): a counter of evaluations since the last
  improvement, checked as the losses arrive."""
  best, wait = float('inf'), 0
  for i, loss in enumerate(losses):
    if loss < best - min_delta:
      best, wait = loss, 0
      continue
    wait += 1
    if patience and wait >= patience:
      return i
  return None


@pytest.mark.parametrize(
    'losses, patience, min_delta',
    [
        ([3.0, 2.0, 1.5, 1.6, 1.7], 2, 0.0),
        ([3.0, 2.0, 1.5, 1.6, 1.4, 1.45], 2, 0.0),
        ([3.0, 2.9, 2.85, 2.84, 2.83], 2, 0.05),
        ([1.0, 1.0, 1.0], 1, 0.0),
        ([5.0, 4.0, 3.0, 2.0], 3, 0.0),
        ([2.0, 2.5, 2.4, 2.3, 1.0], 3, 0.0),
        ([2.0, 2.5], 0, 0.0),
    ],
)
def test_should_stop_agrees_with_a_counter_at_every_prefix(losses, patience, min_delta):
  expected = _reference_stop_index(losses, patience, min_delta)
  first = next(
      (
          i
          for i in range(len(losses))
          if early_stopping.should_stop(losses[: i + 1], patience, min_delta)
      ),
      None,
  )
  assert first == expected


def test_losses_of_ignores_eval_verb_lines_and_sorts_by_step():
  history = [
      {'step': 20, 'eval/loss': 2.0},
      {'step': 10, 'eval/loss': 3.0, 'train/loss': 3.1},
      {'step': 20, 'test/loss': 1.0},
      {'step': 20, 'checkpoint': 'best', 'eval/loss': 9.0},
  ]
  assert early_stopping.losses_of(history) == [3.0, 2.0]
  assert early_stopping.stopped_at(history) is None
  assert early_stopping.stopped_at([{'step': 6, early_stopping.STOPPED_AT: 6}]) == 6


@pytest.mark.parametrize(
    'field, value',
    [
        ('eval_loss_every_steps', -1),
        ('early_stopping_patience', -2),
        ('early_stopping_min_delta', -0.1),
    ],
)
def test_bad_values_name_the_field(tiny_digits_config, field, value):
  with pytest.raises(ConfigError, match=f'config.{field}:'):
    configuration.validate_trainer_config(tiny_digits_config(**{field: value}), 1)


def test_a_run_stops_early_finishes_and_does_not_train_on(tmp_path, tiny_digits_config):
  # min_delta 100: no evaluation counts as an improvement, so the run stops at the
  # (patience + 1)-th loss evaluation: step 3 * 2 = 6 of 30.
  config = tiny_digits_config(
      eval_loss_every_steps=2, early_stopping_patience=2, early_stopping_min_delta=100.0
  )
  workdir = str(tmp_path / 'run')
  result = loop.train_and_evaluate(config, workdir)
  assert result.step == 6
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    history = [json.loads(line) for line in f]
  assert [h['step'] for h in history if 'eval/loss' in h] == [2, 4, 6]
  assert early_stopping.stopped_at(history) == 6
  assert any(h['step'] == 6 and 'test/accuracy' in h for h in history)  # final test evaluation
  assert max(h['step'] for h in history) == 6

  again = loop.train_and_evaluate(
      tiny_digits_config(
          eval_loss_every_steps=2, early_stopping_patience=2, early_stopping_min_delta=100.0
      ),
      workdir,
  )
  assert again.step == 6
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(line) for line in f] == history  # nothing trained or logged again
