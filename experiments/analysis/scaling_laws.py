"""Scaling-law fits of loss against model size, bootstrap intervals, a held-out prediction, a plot.

Two forms:
  'saturating'  L(N) = E + A · N^(-α)   (an irreducible loss E; Hoffmann et al. 2022)
  'kaplan'      L(N) = (N_c / N)^α      (Kaplan et al. 2020: α_N ≈ 0.076 on non-embedding N)

The saturating form, as in Hoffmann et al. 2022, minimises a Huber loss of the residuals of log L,

    log L̂(N) = logsumexp(a - α log N, e),   A = exp(a), E = exp(e),
    minimise Σ_i Huber_δ(log L̂(N_i) - log L_i)              (δ = 1e-3)

with L-BFGS (scipy) from a grid of starting points, keeping the best. Kaplan's form is a line
in log-log space, log L = α log N_c - α log N, fitted by ordinary least squares of log L on
log N (closed form; `fit_kaplan`).

`bootstrap_fit` gives percentile intervals by refitting on resampled runs: each replicate draws
the sizes with replacement (as many draws as there are sizes) and, for each drawn size, its runs
(seeds) with replacement, so both the scatter between sizes and between seeds enter the interval
(replicates with too few distinct sizes for the form are drawn again). `held_out` fits the
sizes below the largest and predicts the largest: predicted vs measured mean loss and the
relative error. `plot_fits` draws, per parameter count, the runs, both fits with their bands, the
held-out prediction and Kaplan's slope for reference on log-log axes, x sorted.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence

import numpy as np
from scipy import optimize

HUBER_DELTA = 1e-3
KAPLAN_ALPHA_N = 0.076  # Kaplan et al. 2020, eq. 1.1: L(N) = (N_c / N)^0.076, N non-embedding
FORMS = ('saturating', 'kaplan')
_MIN_SIZES = {'saturating': 3, 'kaplan': 2}  # distinct sizes a fit needs
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

  def params(self) -> dict[str, float]:
    return {'E': self.E, 'A': self.A, 'alpha': self.alpha}


@dataclasses.dataclass(frozen=True)
class KaplanFit:
  """L(N) = (N_c / N)^alpha; `objective` is the sum of squared residuals of log L."""

  N_c: float
  alpha: float
  objective: float

  def predict(self, n: np.ndarray | float) -> np.ndarray:
    return (self.N_c / np.asarray(n, np.float64)) ** self.alpha

  def params(self) -> dict[str, float]:
    return {'N_c': self.N_c, 'alpha': self.alpha}


def huber(r: np.ndarray, delta: float) -> np.ndarray:
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
  pred = np.logaddexp(u, log_e)  # log(A N^-α + E), stable
  r = pred - log_l
  w = np.exp(u - pred)
  dr = np.clip(r, -delta, delta)
  grad = np.array([np.sum(dr * w), -np.sum(dr * w * log_n), np.sum(dr * (1.0 - w))])
  return float(huber(r, delta).sum()), grad


def _check_points(
    n: Sequence[float], loss: Sequence[float], form: str = 'saturating'
) -> tuple[np.ndarray, np.ndarray]:
  n, loss = np.asarray(n, np.float64), np.asarray(loss, np.float64)
  if n.shape != loss.shape or n.ndim != 1:
    raise ValueError(f'n and loss must be 1-D and of equal length, got {n.shape} and {loss.shape}')
  if form not in FORMS:
    raise ValueError(f'unknown form {form!r}; choose one of {FORMS}')
  if len(np.unique(n)) < _MIN_SIZES[form]:
    what = 'E, A and alpha' if form == 'saturating' else 'N_c and alpha'
    raise ValueError(
        f'fitting {what} needs >= {_MIN_SIZES[form]} distinct sizes, got {np.unique(n)}'
    )
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


def fit_kaplan(n: Sequence[float], loss: Sequence[float]) -> KaplanFit:
  """Fits L = (N_c / N)^alpha: least squares of log L = b - alpha log N, N_c = exp(b / alpha)."""
  n, loss = _check_points(n, loss, 'kaplan')
  log_n, log_l = np.log(n), np.log(loss)
  slope, b = np.polyfit(log_n, log_l, 1)
  alpha = -float(slope)
  residual = log_l - (b + slope * log_n)
  n_c = float(np.exp(b / alpha)) if alpha != 0 else float('inf')
  return KaplanFit(N_c=n_c, alpha=alpha, objective=float(np.sum(residual**2)))


def fit(
    n: Sequence[float], loss: Sequence[float], form: str = 'saturating', **kwargs
) -> PowerLawFit | KaplanFit:
  """fit_power_law ('saturating') or fit_kaplan ('kaplan')."""
  _check_points(n, loss, form)
  return fit_power_law(n, loss, **kwargs) if form == 'saturating' else fit_kaplan(n, loss)


@dataclasses.dataclass(frozen=True)
class BootstrapFit:
  """The fit on all points and percentile intervals over bootstrap refits."""

  fit: PowerLawFit | KaplanFit
  intervals: dict[str, tuple[float, float]]  # parameter name -> (low, high)
  samples: np.ndarray  # [num_bootstrap, parameters] refitted values, in fit.params() order
  confidence: float
  form: str = 'saturating'

  def curves(self, grid: np.ndarray) -> np.ndarray:
    """[num_bootstrap, len(grid)] the refitted curves at sizes `grid`."""
    make = PowerLawFit if self.form == 'saturating' else KaplanFit
    names = list(self.fit.params())
    return np.array(
        [make(**dict(zip(names, s)), objective=0.0).predict(grid) for s in self.samples]
    )

  def band(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - self.confidence) / 2
    low, high = np.percentile(self.curves(grid), [tail, 100 - tail], axis=0)
    return low, high


def resample(n: np.ndarray, rng: np.random.Generator, min_sizes: int) -> np.ndarray:
  """Indices of one bootstrap replicate: the distinct sizes drawn with replacement, then for each
  drawn size its runs with replacement; drawn again until >= `min_sizes` distinct sizes."""
  sizes = np.unique(n)
  groups = {size: np.flatnonzero(n == size) for size in sizes}
  for _ in range(1000):
    drawn = rng.choice(sizes, size=len(sizes), replace=True)
    if len(np.unique(drawn)) >= min_sizes:
      break
  else:  # pragma: no cover - needs ~1000 unlucky draws
    raise ValueError(f'could not draw {min_sizes} distinct sizes from {sizes}')
  return np.concatenate([rng.choice(groups[s], size=len(groups[s]), replace=True) for s in drawn])


def bootstrap_fit(
    n: Sequence[float],
    loss: Sequence[float],
    *,
    form: str = 'saturating',
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    delta: float = HUBER_DELTA,
) -> BootstrapFit:
  """fit() plus percentile intervals over refits on resampled sizes and seeds (`resample`;
  saturating refits start L-BFGS from the full fit's optimum and the grid's corners)."""
  n, loss = _check_points(n, loss, form)
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence}')
  rng = np.random.default_rng(seed)
  full = fit(n, loss, form, delta=delta) if form == 'saturating' else fit_kaplan(n, loss)
  kwargs = {}
  if form == 'saturating':
    starts = [(np.log(full.A), full.alpha, np.log(full.E))]
    starts += list(itertools.product(INIT_LOG_A[::2], INIT_ALPHA[1::2], INIT_LOG_E[::2]))
    kwargs = {'delta': delta, 'starts': starts}
  samples = []
  for _ in range(num_bootstrap):
    idx = resample(n, rng, _MIN_SIZES[form])
    f = fit(n[idx], loss[idx], form, **kwargs)
    samples.append(list(f.params().values()))
  samples = np.asarray(samples)
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
  intervals = {k: (float(low[i]), float(high[i])) for i, k in enumerate(full.params())}
  return BootstrapFit(full, intervals, samples, confidence, form)


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """The largest size predicted by a fit of the others."""

  size: float
  measured: float  # mean loss of its runs
  runs: int
  predicted: float
  interval: tuple[float, float]  # bootstrap percentile interval of the prediction
  fit: BootstrapFit  # on the other sizes

  @property
  def relative_error(self) -> float:
    """(predicted - measured) / measured."""
    return (self.predicted - self.measured) / self.measured


def held_out(
    n: Sequence[float], loss: Sequence[float], *, form: str = 'saturating', **kwargs
) -> HeldOut:
  """Fits (bootstrap_fit, `kwargs`) the runs of every size but the largest and predicts the
  largest's mean loss."""
  n, loss = _check_points(n, loss, form)
  largest = n.max()
  keep = n < largest
  b = bootstrap_fit(n[keep], loss[keep], form=form, **kwargs)
  low, high = b.band(np.array([largest]))
  return HeldOut(
      size=float(largest),
      measured=float(loss[~keep].mean()),
      runs=int((~keep).sum()),
      predicted=float(b.fit.predict(largest)),
      interval=(float(low[0]), float(high[0])),
      fit=b,
  )


def label(b: BootstrapFit) -> str:
  """The fitted law with its intervals, one or two lines."""
  f, ci = b.fit, b.intervals
  a = f'α = {f.alpha:.3f} [{ci["alpha"][0]:.3f}, {ci["alpha"][1]:.3f}]'
  if b.form == 'saturating':
    return (
        f'L = {f.E:.3g} + {f.A:.3g}·N^-{f.alpha:.3f}\n{a}, E ∈ [{ci["E"][0]:.3g}, {ci["E"][1]:.3g}]'
    )
  return f'L = ({f.N_c:.3g} / N)^{f.alpha:.3f}\n{a}'


_COLOURS = {'saturating': 'tab:orange', 'kaplan': 'tab:green'}


def y_limits(values: Sequence[float], margin: float = 1.05) -> tuple[float, float]:
  """The y range of a scaling panel: the runs and predictions (`values`) with a `margin`
  factor either side on the log axis. A bootstrap band can be orders of magnitude wide
  where no size constrains it (the small-N end of a saturating fit); it is cut at this range,
  not allowed to flatten the points."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v) & (v > 0)]
  return float(v.min() / margin), float(v.max() * margin)


def plot_fits(
    points: dict[str, tuple[Sequence[float], Sequence[float]]],
    fits: dict[str, dict[str, BootstrapFit]],
    path: str,
    *,
    held: dict[str, dict[str, HeldOut]] | None = None,
    ylabel: str = 'validation loss (nats / token)',
    title: str | None = None,
) -> str:
  """Log-log panels, one per parameter count (`points`: name -> (n, loss) of every run):
  the runs, each form's fit on all sizes with its bootstrap band (`fits`: name -> form -> fit),
  the fit of the smaller sizes extended to the largest with its prediction (`held`) and a line
  of Kaplan's slope -0.076 through the Kaplan fit's middle, for reference. Writes a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(points), figsize=(6.5 * len(points), 5), squeeze=False)
  for ax, (name, (n, loss)) in zip(axes[0], points.items()):
    n, loss = np.asarray(n, np.float64), np.asarray(loss, np.float64)
    order = np.argsort(n, kind='stable')
    n, loss = n[order], loss[order]
    shown = list(loss)  # what the y range must hold
    for h in (held or {}).get(name, {}).values():
      shown += [h.measured, h.predicted, *h.interval]
    ax.loglog(n, loss, 'o', color='tab:blue', alpha=0.5, markersize=4, label='runs')
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 200)
    for form, b in fits[name].items():
      colour = _COLOURS[form]
      ax.fill_between(grid, *b.band(grid), color=colour, alpha=0.2)
      ax.loglog(grid, b.fit.predict(grid), color=colour, label=f'{form}: {label(b)}')
      h = (held or {}).get(name, {}).get(form)
      if h is not None:
        part = grid[grid <= h.size * 1.5]
        ax.loglog(part, h.fit.fit.predict(part), '--', color=colour, linewidth=1)
        ax.errorbar(
            [h.size],
            [h.predicted],
            yerr=[[h.predicted - h.interval[0]], [h.interval[1] - h.predicted]],
            fmt='x',
            color=colour,
            capsize=3,
            label=f'{form} from smaller sizes: {h.predicted:.4g} ({100 * h.relative_error:+.2f}%)',
        )
    if held and name in held:
      h = next(iter(held[name].values()))
      ax.loglog([h.size], [h.measured], '*', color='black', markersize=12, label='held-out size')
    kaplan = fits[name].get('kaplan')
    if kaplan is not None:
      mid = np.sqrt(n.min() * n.max())
      ax.loglog(
          grid,
          kaplan.fit.predict(mid) * (grid / mid) ** (-KAPLAN_ALPHA_N),
          ':',
          color='gray',
          label=f'Kaplan et al. slope α = {KAPLAN_ALPHA_N}',
      )
    low, high = y_limits(shown)
    ax.set_ylim(low, high)
    # Plain numbers at round values (a log axis within one decade would say '3 x 10^0').
    ticks = [t for t in ticker.MaxNLocator(6).tick_values(low, high) if low <= t <= high]
    ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(f'{name} parameters N')
    ax.set_ylabel(f'{ylabel} (log scale)')
    ax.legend(fontsize=7)
    ax.grid(True, which='both', alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
