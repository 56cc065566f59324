"""Scaling-law fits: L(N) = E + A · N^(-α), with bootstrap confidence intervals and a plot.

Kaplan et al. 2020 fit L(N) = (N_c / N)^α_N (α_N ≈ 0.076 on non-embedding parameters); with
little data an irreducible loss E matters, L(N) = E + A · N^(-α). As in Hoffmann et al. 2022,
the fit minimises a Huber loss of the residuals of log L,

    log L̂(N) = logsumexp(a - α log N, e),   A = exp(a), E = exp(e),
    minimise Σ_i Huber_δ(log L̂(N_i) - log L_i)              (δ = 1e-3)

with L-BFGS (scipy) from a grid of starting points, keeping the best. `bootstrap_fit` refits on
runs resampled with replacement within each model size (seeds), giving percentile intervals.
Fit both parameter counts (`transformer.language_model.count_parameters`: 'non_embedding' as in
Kaplan, and 'total'); `plot_fits` draws them side by side on log-log axes.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special

HUBER_DELTA = 1e-3
# Starting points (log A, α, log E): a grid as in Hoffmann et al. 2022 (their appendix D.2).
INIT_LOG_A = (0.0, 5.0, 10.0, 15.0, 20.0)
INIT_ALPHA = (0.0, 0.25, 0.5, 1.0)
INIT_LOG_E = (-1.0, -0.5, 0.0, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
  """L(N) = E + A · N^(-alpha); `objective` is the Huber loss at the optimum."""

  E: float
  A: float
  alpha: float
  objective: float

  def predict(self, n: np.ndarray | float) -> np.ndarray:
    return self.E + self.A * np.asarray(n, np.float64) ** (-self.alpha)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
  a = np.abs(r)
  return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _objective(
    theta: np.ndarray, log_n: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
  """Σ_i Huber_δ(r_i), r_i = log L̂(N_i) - log L_i, and its gradient in (log A, α, log E):
  ∂ log L̂/∂ log A = w_i, ∂/∂α = -w_i log N_i, ∂/∂ log E = 1 - w_i, with w_i = A N_i^-α / L̂(N_i)
  (the logsumexp's softmax weight); Huber_δ'(r) = clip(r, -δ, δ)."""
  log_a, alpha, log_e = theta
  u = log_a - alpha * log_n  # log(A N^-α)   [points]
  pred = special.logsumexp(np.stack([u, np.full_like(log_n, log_e)]), axis=0)
  r = pred - log_l
  w = np.exp(u - pred)
  dr = np.clip(r, -delta, delta)
  grad = np.array([np.sum(dr * w), -np.sum(dr * w * log_n), np.sum(dr * (1.0 - w))])
  return float(_huber(r, delta).sum()), grad


def _check_points(n: Sequence[float], loss: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  n, loss = np.asarray(n, np.float64), np.asarray(loss, np.float64)
  if n.shape != loss.shape or n.ndim != 1:
    raise ValueError(f'n and loss must be 1-D and of equal length, got {n.shape} and {loss.shape}')
  if len(np.unique(n)) < 3:
    raise ValueError(f'fitting E, A and alpha needs >= 3 distinct sizes, got {np.unique(n)}')
  if (n <= 0).any() or (loss <= 0).any() or not np.isfinite(loss).all():
    raise ValueError('sizes and losses must be positive and finite')
  return n, loss


def fit_power_law(
    n: Sequence[float],
    loss: Sequence[float],
    *,
    delta: float = HUBER_DELTA,
    starts: Sequence[tuple[float, float, float]] | None = None,
) -> PowerLawFit:
  """Fits L = E + A · N^(-alpha) to points (n_i, loss_i) (Huber on log residuals, L-BFGS
  from every starting point (log A, alpha, log E); default: the INIT_* grid; the best
  optimum wins)."""
  n, loss = _check_points(n, loss)
  log_n, log_l = np.log(n), np.log(loss)
  best = None
  if starts is None:
    starts = list(itertools.product(INIT_LOG_A, INIT_ALPHA, INIT_LOG_E))
  for start in starts:
    result = optimize.minimize(
        _objective, np.array(start), args=(log_n, log_l, delta), method='L-BFGS-B', jac=True
    )
    if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
      best = result
  log_a, alpha, log_e = best.x
  return PowerLawFit(
      E=float(np.exp(log_e)), A=float(np.exp(log_a)), alpha=float(alpha), objective=float(best.fun)
  )


@dataclasses.dataclass(frozen=True)
class BootstrapFit:
  """The fit on all points and percentile intervals over bootstrap refits."""

  fit: PowerLawFit
  intervals: dict[str, tuple[float, float]]  # 'E', 'A', 'alpha' -> (low, high)
  samples: np.ndarray  # [num_bootstrap, 3] refitted (E, A, alpha)
  confidence: float


def bootstrap_fit(
    n: Sequence[float],
    loss: Sequence[float],
    *,
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
) -> BootstrapFit:
  """fit_power_law plus intervals: each replicate resamples, for every distinct size, its runs
  (e.g. seeds) with replacement and refits (L-BFGS from the full fit's optimum and from the
  grid's corners). Sizes with one run keep it in every replicate."""
  n, loss = _check_points(n, loss)
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence}')
  rng = np.random.default_rng(seed)
  groups = [np.flatnonzero(n == size) for size in np.unique(n)]
  full = fit_power_law(n, loss, delta=delta)
  starts = [(np.log(full.A), full.alpha, np.log(full.E))]
  starts += list(itertools.product(INIT_LOG_A[::2], INIT_ALPHA[1::2], INIT_LOG_E[::2]))
  samples = []
  for _ in range(num_bootstrap):
    idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
    f = fit_power_law(n[idx], loss[idx], delta=delta, starts=starts)
    samples.append((f.E, f.A, f.alpha))
  samples = np.asarray(samples)
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
  intervals = {k: (float(low[i]), float(high[i])) for i, k in enumerate(('E', 'A', 'alpha'))}
  return BootstrapFit(full, intervals, samples, confidence)


def plot_fits(
    points: dict[str, tuple[Sequence[float], Sequence[float]]],
    fits: dict[str, BootstrapFit],
    path: str,
    *,
    ylabel: str = 'validation loss (nats / token)',
    title: str | None = None,
) -> str:
  """Log-log panels, one per parameter count (e.g. 'non-embedding', 'total'): the points, the
  fitted curve and the bootstrap band of the curve. Writes a PNG to `path`; returns it."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 4.2), squeeze=False)
  for ax, (name, (n, loss)) in zip(axes[0], points.items()):
    n, loss = np.asarray(n, np.float64), np.asarray(loss, np.float64)
    ax.loglog(n, loss, 'o', color='tab:blue', alpha=0.7, label='runs')
    b = fits[name]
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 200)
    curves = np.array([e + a * grid ** (-al) for e, a, al in b.samples])
    tail = 100 * (1 - b.confidence) / 2
    ax.fill_between(
        grid,
        *np.percentile(curves, [tail, 100 - tail], axis=0),
        color='tab:orange',
        alpha=0.25,
        label=f'{100 * b.confidence:.0f}% bootstrap band',
    )
    f, ci = b.fit, b.intervals
    ax.loglog(
        grid,
        f.predict(grid),
        color='tab:orange',
        label=(
            f'L = {f.E:.3g} + {f.A:.3g}·N^-{f.alpha:.3f}\n'
            f'α ∈ [{ci["alpha"][0]:.3f}, {ci["alpha"][1]:.3f}], '
            f'E ∈ [{ci["E"][0]:.3g}, {ci["E"][1]:.3g}]'
        ),
    )
    ax.axhline(f.E, color='gray', linestyle=':', linewidth=1)
    ax.set_xlabel(f'{name} parameters N')
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(True, which='both', alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
