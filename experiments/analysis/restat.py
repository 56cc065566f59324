"""Welch intervals and Holm-adjusted p-values for ablation reports kept only as summaries.

  python -m experiments.analysis.restat docs/ablations/*/ablation.md > docs/ablations/restat.md

Reports written before experiments/analysis/stats.py (the '> seed spread' format: |Δ| > 2
standard errors, no t correction, no adjustment) give per variant only n and the objective's
mean ± std; their sweep directories are gone, so they cannot be regenerated without re-running.
This reads those columns back and, per report, computes each variant's Δ from the base with its
95% Welch interval and p (stats.welch_summary) and the Holm-adjusted p over the report's rows,
beside the old verdict. The summaries are rounded (means to 4, stds to 2 significant digits),
so the p-values are close to, not exactly, those of the runs.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from experiments.analysis import stats

_PM = re.compile(r'^\s*(-?[\d.]+(?:e[+-]?\d+)?)\s*(?:±\s*([\d.]+(?:e[+-]?\d+)?))?\s*$')


def _cells(line: str) -> list[str]:
  return [c.strip() for c in line.strip().strip('|').split('|')]


def summary_rows(text: str) -> list[dict[str, Any]]:
  """Per variant row of every axis table of an old-format report: {'axis', 'variant', 'n',
  'mean', 'std', 'old'} (the base row once per axis, variant 'base')."""
  rows, axis, header = [], None, None
  for line in text.splitlines():
    if line.startswith('## '):
      axis, header = line[3:].strip(), None
    elif line.startswith('| variant | runs |'):
      header = _cells(line)
    elif header and line.startswith('|') and not line.startswith('|---'):
      cells = dict(zip(header, _cells(line)))
      match = _PM.match(cells[header[2]])
      if match is None:  # 'not run'
        continue
      name = cells['variant']
      rows.append(
          {
              'axis': axis,
              'variant': 'base' if name.endswith('(base)') else name,
              'n': int(cells['runs']),
              'mean': float(match.group(1)),
              'std': float(match.group(2) or 0.0),
              'old': cells.get('> seed spread', ''),
          }
      )
    elif not line.startswith('|'):
      header = None if line.strip() else header
  return rows


def report_lines(path: str) -> list[str]:
  """The markdown section of one report: its variants against its base, Holm over all rows."""
  with open(path) as f:
    text = f.read()
  title = next((l[2:].strip() for l in text.splitlines() if l.startswith('# ')), path)
  objective = re.search(r'objective: `([^`]+)` \((\w+)', text)
  rows = summary_rows(text)
  base = next((r for r in rows if r['variant'] == 'base'), None)
  if base is None or objective is None:
    raise ValueError(f'{path}: no old-format ablation table with a base row and an objective')
  variants = [r for r in rows if r['variant'] != 'base']
  diffs = [
      stats.welch_summary(r['mean'], r['std'], r['n'], base['mean'], base['std'], base['n'])
      for r in variants
  ]
  adjusted = stats.holm([d.p for d in diffs])
  lines = [
      f'## {title}',
      '',
      f'`{objective.group(1)}` ({objective.group(2)}), base {base["mean"]:.4g} ± '
      f'{base["std"]:.2g} (n = {base["n"]}); Holm over the {sum(d.has_interval for d in diffs)} '
      f'rows below. Source: `{path}`.',
      '',
      '| axis | variant | n | Δ vs base [95% Welch interval] | p | Holm p | old "> seed spread" | '
      f'Holm p < {stats.ALPHA} |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for r, d, a in zip(variants, diffs, adjusted):
    if d.has_interval:
      shown = [f'{d.delta:+.3g} [{d.low:+.3g}, {d.high:+.3g}]', f'{d.p:.2g}', f'{a:.2g}']
      verdict = 'yes' if a < stats.ALPHA else 'no'
    else:
      shown, verdict = [f'{d.delta:+.3g} (no interval)', '–', '–'], '–'
    lines.append(
        f'| {r["axis"]} | {r["variant"]} | {r["n"]} | ' + ' | '.join(shown) + f' | {r["old"]} | '
        f'{verdict} |'
    )
  return lines + ['']


def main(argv: list[str]) -> int:
  if not argv:
    sys.stderr.write('usage: python -m experiments.analysis.restat REPORT.md ...\n')
    return 2
  out = [
      '# Old ablation reports re-analysed: Welch intervals and Holm-adjusted p',
      '',
      'Written by `python -m experiments.analysis.restat ' + ' '.join(argv) + '` from the '
      "reports' mean ± std columns (rounded: p-values approximate); see "
      'experiments/analysis/restat.py.',
      '',
  ]
  for path in argv:
    if not os.path.isfile(path):
      sys.stderr.write(f'restat: error: {path}: no such file\n')
      return 2
    try:
      out += report_lines(path)
    except ValueError as e:
      sys.stderr.write(f'restat: error: {e}\n')
      return 2
  sys.stdout.write('\n'.join(out))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
