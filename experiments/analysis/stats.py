"""Statistics of seed-repeated results: a variant's per-seed values against the base's.

welch            Δ = mean(x) − mean(y), its Welch t interval (Welch–Satterthwaite degrees of
                 freedom, no equal-variance assumption) and the two-sided Welch p-value
holm             Holm's step-down adjustment of a family of p-values (controls the
                 family-wise error rate over all comparisons of one report)
welch_summary    the same from (mean, std, n) of each side, for results kept only as summaries
mean_interval    the mean of one sample and its t interval (the error bars of the plots)

With one value on either side there is no variance to estimate: no interval, p = nan, and such a
comparison is not counted in a Holm family.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05  # an adjusted p below it: "beyond the spread"


@dataclasses.dataclass(frozen=True)
class Difference:
  """A variant (x, n values) against the base (y, n_base values)."""

  n: int
  n_base: int
  delta: float  # mean(x) - mean(y)
  low: float  # the Welch t interval of delta (nan without one)
  high: float
  p: float  # two-sided Welch p-value (nan without one)
  df: float  # Welch–Satterthwaite degrees of freedom (nan without one)

  @property
  def has_interval(self) -> bool:
    return not math.isnan(self.low)

  def excludes_zero(self) -> bool:
    """The interval lies wholly on one side of 0 (False without an interval)."""
    return self.has_interval and (self.low > 0 or self.high < 0)


def welch(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
  """Δ = mean(x) − mean(y) with its Welch t interval and p-value.

  se² = s_x²/n_x + s_y²/n_y (sample variances, ddof 1);
  df = se⁴ / ((s_x²/n_x)²/(n_x − 1) + (s_y²/n_y)²/(n_y − 1));
  interval Δ ± t_{(1+confidence)/2, df} se;  p = 2 P(T_df > |Δ| / se).
  Both samples constant (se = 0): the interval is [Δ, Δ] and p is 0 (Δ ≠ 0) or 1 (Δ = 0).
  """
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  if x.size == 0 or y.size == 0:
    raise ValueError(f'welch needs values on both sides, got {x.size} and {y.size}')
  delta = float(x.mean() - y.mean())
  nan = float('nan')
  if x.size < 2 or y.size < 2:
    return Difference(x.size, y.size, delta, nan, nan, nan, nan)
  vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
  se = math.sqrt(vx + vy)
  if se == 0:
    return Difference(x.size, y.size, delta, delta, delta, 1.0 if delta == 0 else 0.0, nan)
  df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
  result = scipy_stats.ttest_ind(x, y, equal_var=False)
  ci = result.confidence_interval(confidence)
  return Difference(
      x.size, y.size, delta, float(ci.low), float(ci.high), float(result.pvalue), float(df)
  )


def welch_summary(
    mean: float,
    std: float,
    n: int,
    base_mean: float,
    base_std: float,
    base_n: int,
    confidence: float = CONFIDENCE,
) -> Difference:
  """welch() from summary statistics (sample std, ddof 1) of the variant and the base."""
  delta = float(mean - base_mean)
  nan = float('nan')
  if n < 2 or base_n < 2:
    return Difference(n, base_n, delta, nan, nan, nan, nan)
  vx, vy = std**2 / n, base_std**2 / base_n
  se = math.sqrt(vx + vy)
  if se == 0:
    return Difference(n, base_n, delta, delta, delta, 1.0 if delta == 0 else 0.0, nan)
  df = (vx + vy) ** 2 / (vx**2 / (n - 1) + vy**2 / (base_n - 1))
  half = float(scipy_stats.t.ppf((1 + confidence) / 2, df)) * se
  p = 2 * float(scipy_stats.t.sf(abs(delta) / se, df))
  return Difference(n, base_n, delta, delta - half, delta + half, p, float(df))


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-adjusted p-values, in the input order. With the m non-nan p-values sorted ascending,
  p_(i) becomes max_{j <= i} min(1, (m − j + 1) p_(j)) (i, j from 1); nan stays nan."""
  p = np.asarray(p_values, dtype=float)
  out = np.full(p.shape, np.nan)
  index = np.flatnonzero(~np.isnan(p))
  order = index[np.argsort(p[index], kind='stable')]
  m = len(order)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    out[i] = running
  return out.tolist()


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
  """(mean, low, high): the t interval mean ± t_{(1+confidence)/2, n−1} s/√n of the mean
  (low = high = nan for one value)."""
  v = np.asarray(values, dtype=float)
  mean = float(v.mean())
  if v.size < 2:
    return mean, float('nan'), float('nan')
  half = scipy_stats.t.ppf((1 + confidence) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
  return mean, mean - float(half), mean + float(half)
