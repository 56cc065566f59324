"""The scaling part of an ablation report: the best validation loss of each run of the size variants
against its parameter count, both fitted forms (experiments/analysis/scaling_laws.py) with
bootstrap intervals over sizes and seeds, and the largest size predicted from the others."""

from __future__ import annotations

import math
import statistics
from typing import Any

from experiments.analysis import scaling_laws as scaling
from experiments.core import metric_logging
from experiments.core import model_size

KINDS = ('non_embedding', 'total')  # parameter counts fitted


def parameter_counts(workdir: str) -> dict[str, int]:
  """{'total', 'non_embedding'} of a trial's model (experiments/core/model_size.py): as the run
  logged them when it started, or, for a run older than that log, counted from its latest
  checkpoint."""
  logged = model_size.from_history(metric_logging.read_history(workdir))
  if logged is not None:
    return logged
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  restored = loop.restore_for_inference(workdir, 'latest')
  return model_size.count(restored.state.params, restored.config.task)


def _counts_of(rows: list[dict[str, Any]]) -> dict[str, int] | None:
  """The parameter counts of a variant from the first of its runs that has them."""
  for r in rows:
    try:
      return parameter_counts(r['workdir'])
    except FileNotFoundError:  # no size logged, and no checkpoint (a carried run) or no run
      continue
  return None


def _best_loss(workdir: str, metric: str) -> float | None:
  history = metric_logging.read_history(workdir)  # [] without a metrics file
  values = [float(h[metric]) for h in history if metric in h and 'checkpoint' not in h]
  return min(values) if values else None


def _mean_std(values: list[float]) -> tuple[float, float]:
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pm(values: list[float]) -> str:
  if not values:
    return '–'
  mean, std = _mean_std(values)
  return f'{mean:.4g} ± {std:.2g}' if len(values) > 1 else f'{mean:.4g}'


def _not_falling_with_size(sizes: list[float], losses: list[float]) -> str | None:
  """Why L = E + A N^-alpha (alpha > 0) cannot describe these runs, or None: the mean loss per
  size must fall as the size grows, a rise within the larger seed std of the two neighbours
  counted as noise. (Table 3 (C)-style axes of short runs often fail this: larger models are
  undertrained; a fit through them gives a meaningless alpha.)"""
  by_size: dict[float, list[float]] = {}
  for n, loss in zip(sizes, losses):
    by_size.setdefault(n, []).append(loss)
  stats = sorted((n, *_mean_std(v)) for n, v in by_size.items())
  for (n0, m0, s0), (n1, m1, s1) in zip(stats, stats[1:]):
    if m1 > m0 + max(s0, s1):
      return (
          f'the mean loss does not fall with size ({m0:.4g} at {n0:,.0f} non-embedding parameters, '
          f'{m1:.4g} at {n1:,.0f}, beyond the seed spread); a power law with alpha > 0 cannot '
          'describe these runs'
      )
  return None


def _interval(ci: tuple[float, float]) -> str:
  return f'[{ci[0]:.4g}, {ci[1]:.4g}]'


def fit_lines(fits: dict[str, dict[str, scaling.BootstrapFit]]) -> list[str]:
  """The table of both forms' parameters with their intervals, per parameter count."""
  lines = [
      '| parameters | form | fit | α [95% interval] | E or N_c [95% interval] |',
      '|---|---|---|---|---|',
  ]
  for kind, by_form in fits.items():
    for form, b in by_form.items():
      f, ci = b.fit, b.intervals
      law = (
          f'{f.E:.4g} + {f.A:.4g} N^-{f.alpha:.4g}'
          if form == 'saturating'
          else (f'({f.N_c:.4g} / N)^{f.alpha:.4g}')
      )
      other = 'E' if form == 'saturating' else 'N_c'
      lines.append(
          f'| {kind} | {form} | L = {law} | {f.alpha:.4g} {_interval(ci["alpha"])} | '
          f'{other} = {getattr(f, other):.4g} {_interval(ci[other])} |'
      )
  return lines


def held_out_lines(held: dict[str, dict[str, scaling.HeldOut]]) -> list[str]:
  lines = [
      '| parameters | form | held-out N | measured (mean of runs) | predicted [95% interval] | '
      'relative error |',
      '|---|---|---|---|---|---|',
  ]
  for kind, by_form in held.items():
    for form, h in by_form.items():
      lines.append(
          f'| {kind} | {form} | {h.size:,.0f} | {h.measured:.4f} (n = {h.runs}) | '
          f'{h.predicted:.4f} {_interval(h.interval)} | {100 * h.relative_error:+.2f}% |'
      )
  return lines


def scaling_section(
    names: list[str],
    groups: dict[str, dict[str, Any]],
    task: str,
    plot_path: str,
    num_bootstrap: int = 200,
) -> tuple[list[str], list[str]]:
  """(markdown lines, plot paths) of the scaling fits of the best validation loss of each run of
  `names` (size variants), against non-embedding and total parameters."""
  metric = 'eval/loss' if task == 'classification' else 'eval/nll'
  points: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in KINDS}
  lines = [
      f'| variant | non-embedding params | total params | runs | best validation `{metric}` |',
      '|---|---|---|---|---|',
  ]
  rows, unsized = [], []
  for name in names:
    g = groups.get(name)
    if g is None:
      continue
    counts = _counts_of(g['rows'])
    if counts is None:
      unsized.append(name)
      continue
    losses = [x for r in g['rows'] if (x := _best_loss(r['workdir'], metric)) is not None]
    for kind in points:
      points[kind][0].extend([counts[kind]] * len(losses))
      points[kind][1].extend(losses)
    rows.append((counts['non_embedding'], name, counts, losses))
  for _, name, counts, losses in sorted(rows):  # by size
    lines.append(
        f"| {name} | {counts['non_embedding']:,} | {counts['total']:,} | {len(losses)} | "
        f'{_pm(losses)} |'
    )
  lines.append('')
  if unsized:
    lines += [
        f'Left out, without a size (no run logged its parameter counts and no checkpoint is '
        f'here): {", ".join(unsized)}.',
        '',
    ]
  reason = _not_falling_with_size(*points['non_embedding'])
  if reason:
    return lines + [f'No power-law fit: {reason}.'], []
  try:
    fits = {
        kind: {
            form: scaling.bootstrap_fit(*points[kind], form=form, num_bootstrap=num_bootstrap)
            for form in scaling.FORMS
        }
        for kind in points
    }
  except ValueError as e:
    return lines + [f'No power-law fit: {e}.'], []
  sizes = sorted(set(points['non_embedding'][0]))
  lines += [
      f'{len(sizes)} sizes spanning {math.log10(sizes[-1] / sizes[0]):.2f} decades of '
      f'non-embedding parameters ({sizes[0]:,.0f} to {sizes[-1]:,.0f}); '
      f'{len(points["non_embedding"][0])} runs. Fits: saturating = Huber (δ = '
      f'{scaling.HUBER_DELTA:g}) on log L, L-BFGS; kaplan = least squares of log L on log N. '
      'Intervals: 95% percentile bootstrap, '
      f'{num_bootstrap} replicates resampling the sizes with replacement and then the runs (seeds) '
      "of each drawn size. Kaplan et al. 2020's α_N = 0.076 is drawn for reference.",
      '',
      *fit_lines(fits),
  ]
  held: dict[str, dict[str, scaling.HeldOut]] = {}
  if len(sizes) >= 4:
    held = {
        kind: {
            form: scaling.held_out(*points[kind], form=form, num_bootstrap=num_bootstrap)
            for form in scaling.FORMS
        }
        for kind in points
    }
    lines += [
        '',
        'The largest size predicted by each form fitted to the other sizes (relative error = '
        '(predicted - measured) / measured):',
        '',
        *held_out_lines(held),
    ]
  path = scaling.plot_fits(
      points,
      fits,
      plot_path,
      held=held,
      ylabel=f'best validation {metric}',
      title='L(N): saturating E + A N^-α and Kaplan (N_c / N)^α',
  )
  return lines, [path]
