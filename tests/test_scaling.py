"""experiments/analysis/scaling_laws.py: the power-law fit recovers known (E, A, alpha) from noisy points."""

from __future__ import annotations

import os

import numpy as np
import pytest

from experiments.analysis import scaling_laws as scaling

TRUE = dict(E=1.8, A=60.0, alpha=0.35)


def _points(seeds: int = 3, noise: float = 0.01, seed: int = 0):
  """Losses E + A N^-alpha at 8 sizes x `seeds` runs, with multiplicative log-normal noise."""
  rng = np.random.default_rng(seed)
  sizes = np.geomspace(1e4, 1e8, 8)
  n = np.repeat(sizes, seeds)
  clean = TRUE['E'] + TRUE['A'] * n ** -TRUE['alpha']
  return n, clean * np.exp(noise * rng.standard_normal(n.shape))


def test_huber_matches_definition():
  r = np.array([-0.01, -1e-4, 0.0, 5e-4, 0.02])
  expected = [0.5 * x * x if abs(x) <= 1e-3 else 1e-3 * (abs(x) - 0.5e-3) for x in r]
  np.testing.assert_allclose(scaling._huber(r, 1e-3), expected)


def test_exact_points_recovered():
  n, _ = _points(seeds=1)
  loss = TRUE['E'] + TRUE['A'] * n ** -TRUE['alpha']
  fit = scaling.fit_power_law(n, loss)
  assert fit.E == pytest.approx(TRUE['E'], rel=1e-3)
  assert fit.A == pytest.approx(TRUE['A'], rel=1e-2)
  assert fit.alpha == pytest.approx(TRUE['alpha'], rel=1e-3)


def test_noisy_points_recovered_within_bootstrap_intervals(tmp_path):
  n, loss = _points(seeds=4, noise=0.01)
  result = scaling.bootstrap_fit(n, loss, num_bootstrap=40, seed=1)
  fit = result.fit
  assert fit.E == pytest.approx(TRUE['E'], rel=0.05)
  assert fit.alpha == pytest.approx(TRUE['alpha'], rel=0.15)
  for name, value in TRUE.items():
    low, high = result.intervals[name]
    assert low <= getattr(fit, name) <= high
    assert low <= value <= high, (name, value, (low, high))
  assert result.samples.shape == (40, 3)
  # Predictions of the fit stay within a few percent of the noiseless curve.
  grid = np.geomspace(1e4, 1e8, 20)
  np.testing.assert_allclose(
      fit.predict(grid), TRUE['E'] + TRUE['A'] * grid ** -TRUE['alpha'], rtol=0.02
  )
  total = n * 1.3 + 2e5  # e.g. total parameters = non-embedding + embeddings
  path = scaling.plot_fits(
      {'non-embedding': (n, loss), 'total': (total, loss)},
      {'non-embedding': result, 'total': scaling.bootstrap_fit(total, loss, num_bootstrap=10)},
      str(tmp_path / 'scaling.png'),
  )
  assert os.path.getsize(path) > 10_000


@pytest.mark.parametrize(
    'n, loss, match',
    [
        ([1, 2, 2], [3.0, 2.0, 2.1], 'distinct sizes'),
        ([1, 2, 3], [3.0, -2.0, 1.0], 'positive'),
        ([1, 2, 3], [3.0, 2.0], 'equal length'),
    ],
)
def test_bad_points(n, loss, match):
  with pytest.raises(ValueError, match=match):
    scaling.fit_power_law(n, loss)
