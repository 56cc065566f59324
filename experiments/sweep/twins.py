"""Finished twins: a run that another sweep already made with exactly this config and seed.

A trial whose run config (config.json: every field, the variant's name and the seed included)
equals a COMPLETE run elsewhere is not trained again: the worker copies that run's files into
its trial dir and records its objective and statistics (worker.Worker._adopt, the trial's
`adopted_from` attribute names the source). Looked for, in this order:

  1. a compare stage's own tune stage (tune_compare.py): seed 0 at the chosen rate is a tune run;
  2. the sweep dirs given with `run.py sweep --reuse DIR[,DIR...]`: another sweep's dir, or a
     tuned ablation's DIR (both its stages). Ablations on one base share its runs, e.g.

       python run.py sweep --config configs/ablations/attention.py:multi30k-table3-tuned \\
           --workdir runs/ablations/attention_multi30k-table3-tuned \\
           --reuse runs/ablations/heads_multi30k-tuned

     takes the base's tune and compare runs from the heads ablation (same base config, same
     rates, same seeds) instead of training them again.

Only sweeps in journal files (the default storage) are searched; a source carried without
checkpoints (experiments/sweep/record.py) still gives its metrics and config. A run copied from
a machine of another CPU kind is the same config and seed, not the same numbers bit for bit.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import ml_collections

from experiments.core.task import RunError
from experiments.sweep import claims
from experiments.sweep import files
from experiments.sweep import tune_compare

JOURNAL = 'journal file '  # how sweep.json's 'storage' names the default storage
# The user attribute of a trial taken from another run (worker.py): that run's dir.
ADOPTED_FROM = 'adopted_from'


class ReuseError(RunError, ValueError):
  """A --reuse dir that holds no sweep whose runs can be taken."""


def reuse_sources(dirs: Iterable[str]) -> list[str]:
  """The sweep dirs that `--reuse` names: each DIR itself when it holds a sweep (sweep.json),
  else its tune and compare stages (a tuned ablation's DIR). A one-line error for a DIR that
  holds neither, or a sweep whose study is in a database."""
  out = []
  for d in dirs:
    candidates = [d, *tune_compare.stage_dirs(d)]
    found = [c for c in candidates if files.read_record(c) is not None]
    if d in found:
      found = [d]
    if not found:
      what = 'does not exist' if not os.path.isdir(d) else 'holds no sweep (no sweep.json)'
      raise ReuseError(
          f"--reuse {d}: {what}; give a sweep dir or a tuned ablation's dir (with tune/)"
      )
    for c in found:
      if not files.read_record(c)['storage'].startswith(JOURNAL):
        raise ReuseError(
            f'--reuse {c}: its study is in a database, not a journal file; only sweeps in '
            'journal files can be reused'
        )
    out.extend(found)
  return out


def finished_twin(
    sweep_dir: str, config: ml_collections.ConfigDict, reuse: Iterable[str] = ()
) -> tuple[str, dict[str, Any]] | None:
  """(run dir, trial user attributes) of a COMPLETE run of exactly `config` in this compare
  stage's tune stage or in the sweep dirs `reuse` (reuse_sources' output), or None."""
  from experiments.core import configuration  # pylint: disable=g-import-not-at-top

  own = os.path.abspath(sweep_dir)
  tune = tune_compare.tune_dir_of(sweep_dir)
  sources = [s for s in ([tune] if tune else []) + list(reuse) if os.path.abspath(s) != own]
  wanted = configuration.to_dict(config)
  for source in sources:
    for t in tune_compare.stage_trials(source, None):
      tdir = claims.trial_dir(source, t.number)
      if t.state.name != 'COMPLETE' or t.user_attrs.get('seed') != config.seed:
        continue
      try:
        found = configuration.to_dict(configuration.read_config(tdir))
      except (RunError, OSError, ValueError):  # not carried here, or unreadable: train instead
        continue
      if not configuration.diff(found, wanted):
        return tdir, dict(t.user_attrs)
  return None


def reuse_dirs(trials, own: str) -> list[str]:
  """The dirs of `run.py sweep --reuse` that a sweep took finished runs from, in order of first
  use: the sweep dir of each trial's ADOPTED_FROM run (DIR/trials/N), a tuned ablation's DIR
  for its stages; runs taken from `own` (the sweep's own dir or tuned ablation DIR) left out."""
  out = []
  for t in trials:
    source = t.user_attrs.get(ADOPTED_FROM)
    if not source:
      continue
    sweep = os.path.dirname(os.path.dirname(os.path.normpath(source)))
    parent, stage = os.path.split(sweep)
    if stage in (tune_compare.TUNE_DIR, tune_compare.COMPARE_DIR):
      sweep = parent
    if os.path.abspath(sweep) != os.path.abspath(own) and sweep not in out:
      out.append(sweep)
  return out
