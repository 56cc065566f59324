"""experiments/text/losses.py: label-smoothed cross-entropy vs a NumPy loop."""

import numpy as np
import pytest

from experiments.text import losses


def _reference(logits, labels, weight, eps):
  total, nll_total, count, correct = 0.0, 0.0, 0.0, 0.0
  b, t, v = logits.shape
  for i in range(b):
    for j in range(t):
      if labels[i, j] == 0 or weight[i] == 0:
        continue
      z = logits[i, j].astype(np.float64)
      logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
      target = np.full(v, eps / v)
      target[labels[i, j]] += 1 - eps
      total += weight[i] * -(target * logp).sum()
      nll_total += weight[i] * -logp[labels[i, j]]
      correct += weight[i] * (np.argmax(z) == labels[i, j])
      count += weight[i]
  return total / count, nll_total, count, correct


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_matches_reference_and_masks_padding(eps):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  labels = rng.integers(1, 7, size=(3, 5)).astype(np.int32)
  labels[0, 3:] = 0  # padding tokens
  weight = np.array([1.0, 0.0, 1.0], np.float32)  # row 1 is a padding row
  loss, metrics = losses.translation_loss(logits, labels, weight, eps)
  ref_loss, ref_nll, ref_count, ref_correct = _reference(logits, labels, weight, eps)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics['nll'][0], ref_nll, rtol=1e-5)
  assert float(metrics['loss'][1]) == ref_count == 3 + 5
  assert float(metrics['token_accuracy'][0]) == ref_correct
  # Changing logits at padded positions or padding rows changes nothing.
  logits2 = logits.copy()
  logits2[0, 3:] += 100.0
  logits2[1] = rng.normal(size=(5, 7))
  np.testing.assert_allclose(
      losses.translation_loss(logits2, labels, weight, eps)[0], loss, rtol=1e-6
  )


def test_smoothing_lower_bound():
  # With smoothing the minimum is the entropy of the smoothed target, not 0.
  v, eps = 4, 0.1
  target = np.full(v, eps / v)
  target[2] += 1 - eps
  logits = np.log(target)[None, None].astype(np.float32)
  loss, _ = losses.translation_loss(logits, np.array([[2]]), np.ones(1, np.float32), eps)
  np.testing.assert_allclose(loss, -(target * np.log(target)).sum(), rtol=1e-5)
