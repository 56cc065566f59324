"""`run.py sweep` of a tuned ablation: its tune stage, then its compare stage.

  python run.py sweep --config configs/ablations/scaling.py:lm --workdir DIR [--workers N]

DIR/tune and DIR/compare are ordinary sweep dirs (experiments/sweep/tune_compare.py): the same
command again resumes whichever stage is unfinished; `run.py report --workdir DIR/compare` and
`python -m experiments.analysis.ablation_report --workdir DIR/compare` report the comparison
(with the rate chosen per variant). A stage that ends unfinished (a signal, a failure of the
environment) ends the command with its exit code; the compare stage does not start.
"""

from __future__ import annotations

from typing import Callable

from experiments.core.task import RunError
from experiments.sweep import tune_compare
from experiments.sweep import variants
from experiments.verbs import error as _error


def run_stages(config, workdir: str, url: str | None, run: Callable[[object, str], int]) -> int:
  """Both stages in turn; the exit code (0: both complete). `run(stage config, stage dir)` runs
  one stage as an ordinary sweep (run.py sweep: its workers, its report, non-zero unless the
  stage is complete)."""
  tune_dir, compare_dir = tune_compare.stage_dirs(workdir)
  stages = (
      ('tune', tune_dir, lambda: tune_compare.tune_stage(config)),
      (
          'compare',
          compare_dir,
          lambda: tune_compare.compare_stage(
              config, tune_compare.chosen_rates(config, tune_dir, url)
          ),
      ),
  )
  for name, stage_dir, make in stages:
    try:
      stage = make()
    except RunError as e:  # e.g. the tune stage finished by other workers not yet
      return _error(str(e), 1)
    if name == 'compare':
      shown = ', '.join(f'{v}: {r:g}' for v, r in stage_rates(stage).items())
      print(f'[staged] chosen learning rates: {shown}', flush=True)
    print(f'[staged] {name} stage in {stage_dir}', flush=True)
    code = run(stage, stage_dir)
    if code:
      return code
  return 0


def stage_rates(stage) -> dict[str, float]:
  """{variant: learning rate} of a compare-stage sweep config."""
  return {n: o[tune_compare.RATE] for n, o in variants.table(stage).items()}
