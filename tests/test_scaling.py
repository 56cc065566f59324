"""experiments/analysis/scaling_laws.py: both forms recover known parameters from points generated
here, the bootstrap resamples sizes as well as seeds, and the held-out prediction of the largest
size matches the generating law."""

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
  np.testing.assert_allclose(scaling.huber(r, 1e-3), expected)


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
  kaplan = scaling.bootstrap_fit(n, loss, form='kaplan', num_bootstrap=20)
  path = scaling.plot_fits(
      {'non-embedding': (n, loss), 'total': (total, loss)},
      {
          'non-embedding': {'saturating': result, 'kaplan': kaplan},
          'total': {'saturating': scaling.bootstrap_fit(total, loss, num_bootstrap=10)},
      },
      str(tmp_path / 'scaling.png'),
      held={
          'non-embedding': {'kaplan': scaling.held_out(n, loss, form='kaplan', num_bootstrap=10)}
      },
  )
  assert os.path.getsize(path) > 10_000


def test_the_y_range_holds_the_points_not_the_band():
  """Runs and predictions, 5% either side on the log axis; non-finite and non-positive values
  (a failed run's loss) are left out."""
  low, high = scaling.y_limits([3.2, 4.0, float('nan'), 3.0, 0.0, float('inf')])
  assert (low, high) == pytest.approx((3.0 / 1.05, 4.0 * 1.05))


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


KAPLAN = dict(N_c=8.8e13, alpha=0.076)  # Kaplan et al. 2020's L(N)


def _kaplan_points(seeds: int = 3, noise: float = 0.005, seed: int = 0):
  rng = np.random.default_rng(seed)
  n = np.repeat(np.geomspace(5e3, 2e6, 8), seeds)
  clean = (KAPLAN['N_c'] / n) ** KAPLAN['alpha']
  return n, clean * np.exp(noise * rng.standard_normal(n.shape))


def test_kaplan_form_recovers_n_c_and_alpha():
  n, _ = _kaplan_points(seeds=1)
  exact = scaling.fit_kaplan(n, (KAPLAN['N_c'] / n) ** KAPLAN['alpha'])
  assert exact.alpha == pytest.approx(KAPLAN['alpha'], rel=1e-9)
  assert exact.N_c == pytest.approx(KAPLAN['N_c'], rel=1e-6)
  n, loss = _kaplan_points(noise=0.005)
  b = scaling.bootstrap_fit(n, loss, form='kaplan', num_bootstrap=100, seed=2)
  assert b.fit.alpha == pytest.approx(KAPLAN['alpha'], rel=0.1)
  assert np.log(b.fit.N_c) == pytest.approx(np.log(KAPLAN['N_c']), rel=0.1)
  low, high = b.intervals['alpha']
  assert low <= KAPLAN['alpha'] <= high and b.samples.shape == (100, 2)
  # Least squares in log space, against NumPy's normal equations written out here.
  x, y = np.log(n), np.log(loss)
  slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
  assert b.fit.alpha == pytest.approx(-slope, rel=1e-9)


def test_bootstrap_resamples_sizes_with_repeats():
  n = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 2)
  rng = np.random.default_rng(0)
  repeats = 0
  for _ in range(50):
    idx = scaling.resample(n, rng, min_sizes=3)
    drawn_sizes = n[idx]
    assert len(idx) == len(n) and len(np.unique(drawn_sizes)) >= 3
    # a size drawn twice brings 2 x its 2 runs: some size has more than 2 runs in the replicate
    repeats += np.max(np.unique(drawn_sizes, return_counts=True)[1]) > 2
  assert repeats > 30  # (5 sizes drawn with replacement repeat one with probability 0.96)


def test_an_outlier_size_widens_the_interval():
  """With the seeds of each size in perfect agreement, a seeds-only bootstrap would give a zero
  width interval; resampling sizes spreads alpha, and more so with one size off the law."""
  n, _ = _kaplan_points(seeds=3, noise=0.0)
  clean = (KAPLAN['N_c'] / n) ** KAPLAN['alpha']
  width = {}
  for name, factor in (('clean', 1.0), ('outlier', 1.05)):
    loss = clean * np.where(n == np.unique(n)[3], factor, 1.0)
    noisy = loss * np.exp(0.002 * np.random.default_rng(1).standard_normal(n.shape))
    ci = scaling.bootstrap_fit(n, noisy, form='kaplan', num_bootstrap=200).intervals
    width[name] = ci['alpha'][1] - ci['alpha'][0]
  assert width['outlier'] > 3 * width['clean'] > 0


def test_held_out_largest_size_matches_the_generating_law():
  n, loss = _points(seeds=3, noise=0.005)
  h = scaling.held_out(n, loss, num_bootstrap=30, seed=3)
  truth = TRUE['E'] + TRUE['A'] * h.size ** -TRUE['alpha']
  assert h.size == n.max() and h.runs == 3
  assert h.measured == pytest.approx(loss[n == n.max()].mean())
  assert abs(h.predicted - truth) / truth < 0.01  # the noise is 0.5% per run
  assert abs(h.relative_error) < 0.02
  assert h.relative_error == pytest.approx((h.predicted - h.measured) / h.measured)
  assert h.interval[0] <= h.predicted <= h.interval[1]
  k = scaling.held_out(*_kaplan_points(), form='kaplan', num_bootstrap=30)
  truth = (KAPLAN['N_c'] / k.size) ** KAPLAN['alpha']
  assert abs(k.predicted - truth) / truth < 0.01
