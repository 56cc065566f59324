"""Masks vs NumPy loops."""

import jax.numpy as jnp
import numpy as np
import pytest

from transformer.masks import causal_mask, combine_masks, local_m_centers, local_mask, padding_mask


def test_padding_mask_from_lengths_and_ids_agree():
  lengths = np.array([3, 1, 4])
  ids = np.array([[5, 6, 7, 0], [9, 0, 0, 0], [1, 2, 3, 4]])
  m1 = np.asarray(padding_mask(lengths=lengths, max_len=4))
  m2 = np.asarray(padding_mask(ids=ids))
  assert m1.shape == (3, 1, 1, 4)
  for b in range(3):
    for j in range(4):
      assert m1[b, 0, 0, j] == (j < lengths[b])
  np.testing.assert_array_equal(m1, m2)


def test_causal_mask_loops():
  m = np.asarray(causal_mask(3, 5))
  assert m.shape == (1, 1, 3, 5)
  for i in range(3):
    for j in range(5):
      assert m[0, 0, i, j] == (j <= i + 2)
  sq = np.asarray(causal_mask(4))[0, 0]
  np.testing.assert_array_equal(sq, np.tril(np.ones((4, 4), bool)))


def test_local_mask_default_and_given_centers():
  m = np.asarray(local_mask(4, 6, 1))
  for i in range(4):
    for j in range(6):
      assert m[0, 0, i, j] == (abs(j - i) <= 1)
  c = np.array([[0.0, 4.5], [2.0, 2.0]])
  m = np.asarray(local_mask(2, 6, 1, c))
  assert m.shape == (2, 1, 2, 6)
  for b in range(2):
    for i in range(2):
      for j in range(6):
        assert m[b, 0, i, j] == (abs(j - c[b, i]) <= 1)


def test_local_m_centers_clamp_to_the_last_real_key():
  lengths = [3, 6, 1]
  key_mask = padding_mask(lengths=jnp.array(lengths), max_len=6)
  c = np.asarray(local_m_centers(jnp.arange(8), key_mask, 6))
  assert c.shape == (3, 8)
  for b, n in enumerate(lengths):
    for t in range(8):
      assert c[b, t] == (t if t <= n - 1 else n - 1)
  # No mask: every key is real; a single decode step keeps its own position.
  np.testing.assert_array_equal(local_m_centers(jnp.arange(5), None, 3), [[0, 1, 2, 2, 2]])
  np.testing.assert_array_equal(local_m_centers(jnp.array([4.0]), key_mask, 6), [[2], [4], [0]])
  with pytest.raises(ValueError, match=r"key_mask must be \[batch, 1, 1\|q_len, k_len=6\]"):
    local_m_centers(jnp.arange(2), jnp.ones((3, 6), bool), 6)


def test_combine_masks():
  p = padding_mask(lengths=jnp.array([2, 3]), max_len=3)
  c = causal_mask(3)
  m = np.asarray(combine_masks(p, None, c))
  assert m.shape == (2, 1, 3, 3)
  for b, n in enumerate([2, 3]):
    for i in range(3):
      for j in range(3):
        assert m[b, 0, i, j] == (j < n and j <= i)
  assert combine_masks(None, None) is None


def test_mask_errors_name_values():
  with pytest.raises(ValueError, match="exactly one"):
    padding_mask()
  with pytest.raises(ValueError, match=r"k_len \(2\) must be >= q_len \(3\)"):
    causal_mask(3, 2)
  with pytest.raises(ValueError, match="window must be >= 0, got -1"):
    local_mask(2, 2, -1)
  with pytest.raises(
      ValueError, match=r"shapes \(2, 1, 1, 3\) and \(1, 1, 4, 4\) do not broadcast"
  ):
    combine_masks(padding_mask(lengths=jnp.array([1, 2]), max_len=3), causal_mask(4))
