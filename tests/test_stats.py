"""experiments/analysis/stats.py against numbers computed independently: Welch's formulas in
NumPy with the t distribution integrated from its density, textbook values, and Holm examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.analysis import stats


def _t_density(t: np.ndarray, df: float) -> np.ndarray:
  c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
  return c * (1 + t**2 / df) ** (-(df + 1) / 2)


def _central_mass(q: float, df: float) -> float:
  """P(|T_df| < q), by the trapezoid rule over the density."""
  t = np.linspace(0.0, q, 200_001)
  return 2 * float(np.trapezoid(_t_density(t, df), t))


def test_welch_against_its_formulas():
  x = [0.62, 0.71, 0.55, 0.80, 0.66]  # a variant, 5 seeds
  y = [0.50, 0.58, 0.47]  # the base, 3 seeds
  d = stats.welch(x, y)
  vx, vy = np.var(x, ddof=1) / 5, np.var(y, ddof=1) / 3
  se = math.sqrt(vx + vy)
  df = (vx + vy) ** 2 / (vx**2 / 4 + vy**2 / 2)
  delta = np.mean(x) - np.mean(y)
  assert (d.n, d.n_base) == (5, 3)
  assert d.delta == pytest.approx(delta, rel=1e-12)
  assert d.df == pytest.approx(df, rel=1e-12)
  assert d.p == pytest.approx(1 - _central_mass(abs(delta) / se, df), abs=1e-6)
  # The interval is centred on delta and its half-width is the 97.5% t quantile times se.
  assert (d.low + d.high) / 2 == pytest.approx(delta, rel=1e-12)
  q = (d.high - d.low) / 2 / se
  assert _central_mass(q, df) == pytest.approx(0.95, abs=1e-6)
  assert d.excludes_zero() and d.low > 0


def test_welch_textbook_values():
  # Equal n and variances: df = 2 (n - 1) = 4 exactly; t table: t_{0.975, 4} = 2.776.
  d = stats.welch([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
  assert d.df == pytest.approx(4.0)
  half = 2.776 * math.sqrt(2 / 3)
  assert d.low == pytest.approx(3 - half, abs=1e-3) and d.high == pytest.approx(3 + half, abs=1e-3)
  # Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 25.0, p = 0.021.
  a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
  a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
  d = stats.welch(a1, a2)
  se = (d.high - d.low) / 2 / 2.060  # t_{0.975, 25} = 2.060
  assert d.delta / se == pytest.approx(-2.46, abs=0.01)
  assert d.df == pytest.approx(25.0, abs=0.05)
  assert d.p == pytest.approx(0.021, abs=0.0005)


def test_welch_one_value_has_no_interval():
  for x, y in (([1.0], [2.0, 2.1, 1.9]), ([1.0, 1.2], [2.0])):
    d = stats.welch(x, y)
    assert d.delta == pytest.approx(np.mean(x) - np.mean(y))
    assert not d.has_interval and math.isnan(d.p) and not d.excludes_zero()
  with pytest.raises(ValueError, match='both sides'):
    stats.welch([], [1.0])


def test_welch_constant_samples():
  d = stats.welch([2.0, 2.0], [1.0, 1.0])
  assert (d.low, d.high, d.p) == (1.0, 1.0, 0.0) and d.excludes_zero()
  d = stats.welch([1.0, 1.0], [1.0, 1.0])
  assert (d.low, d.high, d.p) == (0.0, 0.0, 1.0) and not d.excludes_zero()


def test_holm_example():
  # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> max(0.06, 0.04)
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_keeps_order_and_skips_nan():
  # 0.3 x 3 = 0.9, then max(0.9, 0.4 x 2), max(0.9, 0.9 x 1)
  assert stats.holm([0.4, 0.3, 0.9]) == pytest.approx([0.9, 0.9, 0.9])
  # 0.01 x 3 = 0.03, 0.6 x 2 = 1.2 -> capped at 1, then max(1, 0.7)
  assert stats.holm([0.6, 0.7, 0.01]) == pytest.approx([1.0, 1.0, 0.03])
  out = stats.holm([0.5, float('nan'), 0.01])  # m = 2: 0.01 x 2, then max(0.02, 0.5)
  assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
  assert stats.holm([]) == []
  p = np.random.default_rng(0).uniform(size=12)
  adjusted = np.array(stats.holm(p))
  ranked = adjusted[np.argsort(p)]
  assert np.all(np.diff(ranked) >= 0) and np.all(adjusted >= p) and np.all(adjusted <= 1)


def test_mean_interval():
  mean, low, high = stats.mean_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975, 2} = 4.303
  assert mean == 2.0
  assert (low, high) == pytest.approx(
      (2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)), abs=1e-3
  )
  mean, low, high = stats.mean_interval([5.0])
  assert mean == 5.0 and math.isnan(low) and math.isnan(high)


def test_welch_summary_equals_welch_on_the_samples():
  x, y = [0.62, 0.71, 0.55, 0.80, 0.66], [0.50, 0.58, 0.47]
  raw = stats.welch(x, y)
  summary = stats.welch_summary(
      float(np.mean(x)), float(np.std(x, ddof=1)), 5, float(np.mean(y)), float(np.std(y, ddof=1)), 3
  )
  for field in ('delta', 'low', 'high', 'p', 'df'):
    assert getattr(summary, field) == pytest.approx(getattr(raw, field), rel=1e-9)
  assert not stats.welch_summary(1.0, 0.0, 1, 0.5, 0.1, 3).has_interval


def test_restat_reads_an_old_report_and_adjusts_over_its_rows(tmp_path):
  """An old-format report (the '> seed spread' tables) written here: the re-analysis finds both
  axes' rows, takes the base once, and its p-values are Welch's from summary statistics
  (the t density integrated here) adjusted by Holm over the report's three rows."""
  from experiments.analysis import restat  # pylint: disable=g-import-not-at-top

  head = '| variant | runs | eval/bleu | test/bleu | Δ vs base | paper direction | > seed spread |'
  text = '\n'.join(
      [
          '# Ablation `tiny`',
          '',
          '- objective: `eval/bleu` (maximize; best value over the evaluations)',
          '',
          '## heads',
          '',
          head,
          '|---|---|---|---|---|---|---|',
          '| 1 | 3 | 14 ± 0.4 | 14.2 ± 0.5 | -3 | yes | yes |',
          '| 8 (base) | 3 | 17 ± 0.3 | 17.5 ± 0.2 |  |  |  |',
          '| 32 | 0 | not run |  |  |  |  |',
          '',
          '## N',
          '',
          head,
          '|---|---|---|---|---|---|---|',
          '| 2 (base) | 3 | 17 ± 0.3 | 17.5 ± 0.2 |  |  |  |',
          '| 4 | 3 | 16.5 ± 0.6 | 16 ± 1 | -0.5 | no | no |',
          '| 6 | 2 | 17.2 ± 0.1 | 17 ± 1 | +0.2 | no | no |',
      ]
  )
  rows = restat.summary_rows(text)
  assert [(r['axis'], r['variant'], r['n']) for r in rows] == [
      ('heads', '1', 3),
      ('heads', 'base', 3),
      ('N', 'base', 3),
      ('N', '4', 3),
      ('N', '6', 2),
  ]
  path = tmp_path / 'ablation.md'
  path.write_text(text)
  lines = restat.report_lines(str(path))

  def welch_p(m, s, n, bm=17.0, bs=0.3, bn=3):
    vx, vy = s * s / n, bs * bs / bn
    df = (vx + vy) ** 2 / (vx**2 / (n - 1) + vy**2 / (bn - 1))
    return 1 - _central_mass(abs(m - bm) / math.sqrt(vx + vy), df)

  p = [welch_p(14, 0.4, 3), welch_p(16.5, 0.6, 3), welch_p(17.2, 0.1, 2)]
  m = 3
  order = np.argsort(p)
  holm, running = [0.0] * m, 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    holm[i] = running
  for variant, pi, hi in zip(('1', '4', '6'), p, holm):
    table = [
        [c.strip() for c in l.strip().strip('|').split('|')] for l in lines if l.startswith('|')
    ]
    (cells,) = [c for c in table if c[1] == variant]
    assert float(cells[4]) == pytest.approx(pi, rel=0.02)
    assert float(cells[5]) == pytest.approx(hi, rel=0.02)
  assert 'Holm over the 3 rows below' in '\n'.join(lines)
  assert restat.main([str(tmp_path / 'missing.md')]) == 2
