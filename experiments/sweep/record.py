"""A sweep's record: its dir without checkpoints, which carries it to another machine.

  python -m experiments.sweep.record SRC DEST

copies sweep dir SRC (or a tuned ablation's DIR, with its tune/ and compare/ stages) to DEST,
leaving behind what a machine can rebuild or does not need to go on: checkpoints, tokenizer
assets, TensorBoard events, plots and lock files. What goes is the journal, sweep.json, the
reports and each trial's config.json and metrics.jsonl (a run logs its parameter counts there:
experiments/core/model_size.py), about 14 kB for a 3,000-step LM trial, and each seed-0 run's
attention view (experiments/analysis/attention_view.py, 10 kB for an MNIST run), written first
from its checkpoint: the ablation report's attention grid draws it where the checkpoint is not.
Copy the record into an empty DIR on the new machine (the same command, DEST first) and the same
`run.py sweep` command resumes: finished trials stay finished, a tuned ablation's compare stage
is built from the carried tune stage, a trial that was running starts again from step 0, and the
reports are written from the carried files.

Journals only grow, so a DEST journal that is not a prefix of SRC's holds records SRC lacks (a
sweep that went on at DEST, or another sweep): the copy is refused with a one-line error and
nothing is written. Stop the workers on both sides first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from experiments.analysis import attention_view
from experiments.core.task import RunError
from experiments.sweep import files
from experiments.sweep import storage

LEFT_BEHIND = (
    'checkpoints',
    'checkpoints.unreadable.*',
    'assets',
    'tensorboard',
    'plots',
    '*.lock',
    '.worker',
    '*.tmp',
)


class RecordError(RunError, ValueError):
  """SRC is no sweep, or copying it would lose what DEST holds."""


def sweep_dirs(root: str) -> list[str]:
  """The sweep dirs (those with sweep.json) at or under `root`, relative to it ('.' for root)."""
  out = []
  for here, dirs, names in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d != 'trials')  # trials hold runs, not sweeps
    if files.SWEEP_FILE in names:
      out.append(os.path.relpath(here, root))
  return out


def _is_prefix(path: str, of: str) -> bool:
  size = os.path.getsize(path)
  if size > os.path.getsize(of):
    return False
  with open(path, 'rb') as a, open(of, 'rb') as b:
    return a.read() == b.read(size)


def _seed_zero_runs(sweep_dir: str) -> list[str]:
  """The trial dirs of `sweep_dir` trained with seed 0 whose checkpoints are newer than their
  attention view (or that have none)."""
  trials = os.path.join(sweep_dir, 'trials')
  out = []
  for name in (
      sorted(os.listdir(trials), key=lambda n: (len(n), n)) if os.path.isdir(trials) else []
  ):
    tdir = os.path.join(trials, name)
    try:
      with open(os.path.join(tdir, 'config.json')) as f:
        seed = json.load(f).get('seed')
    except (OSError, ValueError):
      continue
    ckpt, view = os.path.join(tdir, 'checkpoints'), os.path.join(tdir, attention_view.VIEW_FILE)
    if seed == 0 and os.path.isdir(ckpt):
      if not os.path.exists(view) or os.path.getmtime(view) < os.path.getmtime(ckpt):
        out.append(tdir)
  return out


def write_views(src: str, found: list[str]) -> int:
  """Writes the attention view of each seed-0 run with a checkpoint under the sweep dirs
  `found` of `src`; the number written."""
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top

  runs = [t for rel in found for t in _seed_zero_runs(os.path.join(src, rel))]
  inputs, written = {}, 0
  for i, tdir in enumerate(runs):
    print(f'[record] attention view {i + 1}/{len(runs)}: {tdir}', flush=True)
    try:
      written += attention_view.make(tdir, inputs) is not None
    except (checkpointing.CheckpointNotFoundError, checkpointing.UnreadableCheckpointError) as e:
      print(f'[record] no attention view for {tdir}: {str(e).splitlines()[0]}', flush=True)
  return written


def copy(src: str, dest: str) -> list[str]:
  """Writes the attention views of `src`'s seed-0 runs (write_views), then copies the record of
  `src` to `dest`; returns the sweep dirs copied (relative paths)."""
  found = sweep_dirs(src) if os.path.isdir(src) else []
  if not found:
    raise RecordError(f'{src}: no sweep here (no {files.SWEEP_FILE} at or under it)')
  for rel in found:
    old = os.path.join(dest, rel, storage.JOURNAL_FILE)
    new = os.path.join(src, rel, storage.JOURNAL_FILE)
    if os.path.exists(old) and not (os.path.exists(new) and _is_prefix(old, new)):
      raise RecordError(
          f'{old} holds records that {new} lacks (the sweep went on there, or it is another '
          'sweep); nothing was copied. Copy into an empty directory, or the other way round.'
      )
  write_views(src, found)
  shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*LEFT_BEHIND), dirs_exist_ok=True)
  return found


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('src', help='a sweep dir (or a tuned ablation DIR)')
  parser.add_argument('dest', help='where the record goes (created if missing)')
  args = parser.parse_args(argv)
  try:
    found = copy(args.src, args.dest)
  except (RecordError, OSError) as e:
    sys.stderr.write(f'record: error: {e}\n')
    return 1
  print(f'Copied the record of {len(found)} sweep dir(s) ({", ".join(found)}) to {args.dest}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
