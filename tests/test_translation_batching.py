"""experiments/text/batching.py: token-budget length buckets, determinism, padding."""

import numpy as np
import pytest

from experiments.text import batching

BOS, EOS = 2, 3


def _pairs(n=300, seed=0):
  rng = np.random.default_rng(seed)
  # The first two ids encode the index: every source is distinct.
  src = [
      [4 + i % 40, 4 + i // 40] + list(rng.integers(4, 50, size=rng.integers(0, 30))) + [EOS]
      for i in range(n)
  ]
  tgt = [list(rng.integers(4, 50, size=rng.integers(1, 30))) + [EOS] for _ in range(n)]
  return src, tgt


BUCKETING = batching.Bucketing(tokens_per_batch=256, max_rows=64, length_multiple=4, row_multiple=4)


def test_epoch_covers_every_pair_once_within_the_budget():
  src, tgt = _pairs()
  source = batching.BucketedSource(src, tgt, BUCKETING, seed=3)
  steps = int(source.padding_stats()['batches_per_epoch'])
  seen, real, slots = [], 0, 0
  for step in range(steps):
    b = source.batch(step)
    rows, length = b['source'].shape
    assert b['target_in'].shape == b['target_out'].shape == (rows, length)
    assert rows % 4 == 0 and length % 4 == 0 and rows * length <= 256 or rows == 4
    for i in np.flatnonzero(b['weight']):
      s = [int(x) for x in b['source'][i] if x]
      t = [int(x) for x in b['target_out'][i] if x]
      k = (s[0] - 4) + 40 * (s[1] - 4)
      assert src[k] == s
      assert tgt[k] == t
      # Decoder input is the labels shifted right behind bos.
      assert list(b['target_in'][i, : len(t)]) == [BOS] + t[:-1]
      assert max(len(s), len(t)) <= length < max(len(s), len(t)) + 4
      seen.append(k)
    assert not b['source'][b['weight'] == 0].any()  # padding rows are empty
    real += int((b['source'] > 0).sum())
    slots += rows * length
  assert sorted(seen) == list(range(len(src)))  # every pair exactly once
  assert (source.batch(steps)['weight'] > 0).any()  # the next epoch starts
  stats = source.padding_stats()
  np.testing.assert_allclose(stats['source_padding'], 1 - real / slots, rtol=1e-9)
  assert (
      stats['num_shapes']
      == len(source.batch_shapes)
      == len({shape for shape in source.batch_shapes})
  )


def test_batches_are_a_pure_function_of_seed_and_step():
  src, tgt = _pairs()
  a = batching.BucketedSource(src, tgt, BUCKETING, seed=5)
  b = batching.BucketedSource(src, tgt, BUCKETING, seed=5)
  c = batching.BucketedSource(src, tgt, BUCKETING, seed=6)
  for step in [37, 3, 0, 120, 3]:  # any order: no iterator state
    for key in ('source', 'target_in', 'target_out', 'weight'):
      np.testing.assert_array_equal(a.batch(step)[key], b.batch(step)[key])
  assert any(not np.array_equal(a.batch(s)['source'], c.batch(s)['source']) for s in range(5))
  state = a.state(50)
  b.check_state(state)
  with pytest.raises(ValueError, match='seed'):
    c.check_state(state)


def test_eval_batches_fixed_order_and_shapes():
  src, tgt = _pairs(50)
  seen = []
  for idx, batch in batching.eval_batches(src, tgt, rows=16, length_multiple=8):
    assert batch['source'].shape[0] == 16 and batch['source'].shape[1] % 8 == 0
    assert batch['weight'].sum() == len(idx)
    seen += list(idx)
  assert sorted(seen) == list(range(50))


def test_truncate_keeps_eos():
  assert batching.truncate([5, 6, 7, 8, EOS], 3) == [5, 6, EOS]
  assert batching.truncate([5, EOS], 3) == [5, EOS]
