"""experiments.core.data.Prefetcher: same batches in the same order as the wrapped source."""

import threading

import numpy as np
import pytest

from experiments.core import data as data_lib


class RecordingSource:
  """Batch of step s = [s, s, s]; records which thread asked for which step."""

  def __init__(self, fail_at: int | None = None):
    self.calls: list[tuple[int, str]] = []
    self.fail_at = fail_at

  def batch(self, step):
    self.calls.append((step, threading.current_thread().name))
    if step == self.fail_at:
      raise ValueError(f'bad step {step}')
    return {'x': np.full((3,), step)}

  def state(self, step):
    return {'step': step}

  def check_state(self, state):
    if state.get('seed') != 0:
      raise ValueError('seed differs')


def test_sequential_steps_match_the_source_and_are_prefetched():
  source = RecordingSource()
  prefetcher = data_lib.Prefetcher(source, end=5)
  try:
    got = [prefetcher.batch(s)['x'].tolist() for s in range(5)]
  finally:
    prefetcher.close()
  assert got == [[s] * 3 for s in range(5)]
  # step 0 on the caller's thread, steps 1..4 on the prefetch thread, nothing beyond `end`
  assert [s for s, _ in source.calls] == [0, 1, 2, 3, 4]
  assert source.calls[0][1] == threading.current_thread().name
  assert all(name.startswith('prefetch') for _, name in source.calls[1:])


def test_jump_to_another_step_fetches_it_directly():
  source = RecordingSource()
  prefetcher = data_lib.Prefetcher(source)
  try:
    assert prefetcher.batch(0)['x'][0] == 0
    assert prefetcher.batch(7)['x'][0] == 7  # step 1 was prefetched, 7 is fetched now
    assert prefetcher.batch(8)['x'][0] == 8
  finally:
    prefetcher.close()
  assert 7 in [s for s, _ in source.calls]


def test_state_and_check_state_are_delegated():
  prefetcher = data_lib.Prefetcher(RecordingSource())
  try:
    assert prefetcher.state(12) == {'step': 12}
    prefetcher.check_state({'seed': 0})
    with pytest.raises(ValueError, match='seed differs'):
      prefetcher.check_state({'seed': 1})
  finally:
    prefetcher.close()


def test_error_in_a_prefetched_batch_reaches_the_caller_at_that_step():
  prefetcher = data_lib.Prefetcher(RecordingSource(fail_at=2))
  try:
    prefetcher.batch(0)
    prefetcher.batch(1)  # step 2 fails on the background thread...
    with pytest.raises(ValueError, match='bad step 2'):
      prefetcher.batch(2)  # ...and is raised here
  finally:
    prefetcher.close()


def test_array_source_batches_unchanged_through_the_prefetcher():
  arrays = {'x': np.arange(40).reshape(20, 2), 'y': np.arange(20)}
  plain = data_lib.ArraySource(arrays, 4, seed=3)
  prefetcher = data_lib.Prefetcher(data_lib.ArraySource(arrays, 4, seed=3), end=12)
  try:
    for step in range(12):  # 2.4 epochs: crosses epoch boundaries
      got, want = prefetcher.batch(step), plain.batch(step)
      np.testing.assert_array_equal(got['x'], want['x'])
      np.testing.assert_array_equal(got['y'], want['y'])
      assert prefetcher.state(step) == plain.state(step)
  finally:
    prefetcher.close()
