"""experiments/core/data.py: step-indexed sources are pure functions of (seed, step)."""

import numpy as np
import pytest

from experiments.core import data


def _arrays(n=10):
  return {'x': np.arange(n, dtype=np.float32)[:, None], 'y': np.arange(n, dtype=np.int32)}


def test_array_source_epochs_are_permutations_without_remainder():
  source = data.ArraySource(_arrays(10), batch_size=3, seed=0)
  assert source.steps_per_epoch == 3  # 10 // 3; the remainder is dropped each epoch
  for epoch in range(3):
    seen = np.concatenate([source.batch(epoch * 3 + i)['y'] for i in range(3)])
    assert len(set(seen.tolist())) == 9  # no repeats inside an epoch
  assert not np.array_equal(source.batch(0)['y'], source.batch(3)['y'])  # reshuffled


def test_batch_is_pure_function_of_seed_and_step():
  a = data.ArraySource(_arrays(), batch_size=4, seed=1)
  b = data.ArraySource(_arrays(), batch_size=4, seed=1)
  c = data.ArraySource(_arrays(), batch_size=4, seed=2)
  order = [7, 0, 3, 7, 1]  # random access, any order, repeated
  for step in order:
    np.testing.assert_array_equal(a.batch(step)['y'], b.batch(step)['y'])
  assert any(not np.array_equal(a.batch(s)['y'], c.batch(s)['y']) for s in range(4))
  # Sequential vs random access give the same batches.
  fresh = data.ArraySource(_arrays(), batch_size=4, seed=1)
  np.testing.assert_array_equal(fresh.batch(7)['y'], a.batch(7)['y'])


def test_augment_gets_a_step_seeded_generator():
  def augment(batch, rng):
    return {**batch, 'x': batch['x'] + rng.normal(size=batch['x'].shape).astype(np.float32)}

  a = data.ArraySource(_arrays(), batch_size=4, seed=0, augment=augment)
  b = data.ArraySource(_arrays(), batch_size=4, seed=0, augment=augment)
  np.testing.assert_array_equal(a.batch(5)['x'], b.batch(5)['x'])
  assert not np.array_equal(
      a.batch(5)['x'] - a.batch(5)['y'][:, None], a.batch(7)['x'] - a.batch(7)['y'][:, None]
  )


def test_epoch_source_with_variable_epoch_lengths():
  # Epoch e has e + 1 batches; the batch is (epoch, position).
  source = data.EpochSource(
      lambda e: [(e, i) for i in range(e + 1)], lambda plan, step: {'plan': np.array(plan)}, seed=0
  )
  expected = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0)]
  for step, plan in reversed(list(enumerate(expected))):
    assert source.locate(step) == plan
    assert tuple(source.batch(step)['plan']) == plan


def test_state_round_trip_and_mismatch_errors():
  source = data.ArraySource(_arrays(10), batch_size=3, seed=4)
  state = source.state(7)
  assert state == {
      'step': 7,
      'epoch': 2,
      'position': 1,
      'seed': 4,
      'num_examples': 10,
      'batch_size': 3,
  }
  source.check_state(state)
  with pytest.raises(ValueError, match='seed'):
    data.ArraySource(_arrays(10), batch_size=3, seed=5).check_state(state)
  with pytest.raises(ValueError, match='num_examples'):
    data.ArraySource(_arrays(11), batch_size=3, seed=4).check_state(state)
  with pytest.raises(ValueError, match='position'):
    source.check_state({**state, 'position': 0})


def test_too_small_dataset_is_an_error():
  with pytest.raises(ValueError, match='fewer than batch_size'):
    data.ArraySource(_arrays(3), batch_size=4, seed=0)


def test_batched_and_pad_batch():
  batches = list(data.batched(_arrays(10), 4))
  assert [len(b['y']) for b in batches] == [4, 4, 2]
  padded = data.pad_batch(batches[-1], 4)
  np.testing.assert_array_equal(padded['y'], [8, 9, 0, 0])
  np.testing.assert_array_equal(padded['weight'], [1, 1, 0, 0])
  assert padded['x'].shape == (4, 1)
  with pytest.raises(ValueError, match='does not fit'):
    data.pad_batch(batches[0], 3)
