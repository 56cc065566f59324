"""Convert a workdir's checkpoints between unrolled and scanned layers (`model.scan_layers`).

    python -m experiments.core.convert_layout --workdir runs/multi30k --out runs/multi30k_scan \\
        --scan_layers=true

OUT receives config.json (with model.scan_layers set), metrics.jsonl, assets/ (e.g. the
SentencePiece model) and every checkpoint of WORKDIR (or --step) with its parameters AND optimizer
state converted by `transformer.stack_layout.to_scanned` / `to_unrolled`, the data-iterator position and
the validation metrics kept. OUT then resumes training, evaluates, translates or classifies
exactly like WORKDIR, in the other layout.
"""

from __future__ import annotations

import os
import shutil
import sys

import jax
import ml_collections
from absl import app, flags

from experiments.core import checkpointing, configuration, loop, metric_logging
from experiments.core.task import RunError
from transformer import stack_layout


def convert_workdir(
    workdir: str, out: str, scan_layers: bool, steps: list[int] | None = None
) -> list[int]:
  """Writes the converted copy of `workdir` to `out`; returns the converted steps."""
  config = configuration.read_config(workdir)  # old config.json files are upgraded
  if bool(config.model.scan_layers) == scan_layers:
    raise RunError(f'{workdir} already has model.scan_layers={scan_layers}; nothing to convert.')
  if os.path.exists(loop.checkpoint_dir(out)) and os.listdir(loop.checkpoint_dir(out)):
    raise RunError(f'{out} already holds checkpoints; choose a new --out.')
  source = checkpointing.Checkpointer(loop.checkpoint_dir(workdir), read_only=True)
  available = source.all_steps()
  if not available:
    raise checkpointing.CheckpointNotFoundError(f'no checkpoints in {loop.checkpoint_dir(workdir)}')
  steps = steps or available
  missing = sorted(set(steps) - set(available))
  if missing:
    raise checkpointing.CheckpointNotFoundError(
        f'no checkpoint for step(s) {missing} in {workdir}; available: {available}'
    )

  new = ml_collections.ConfigDict(config.to_dict())
  new.model.scan_layers = scan_layers
  os.makedirs(out, exist_ok=True)
  for name in ('assets',):
    if os.path.isdir(os.path.join(workdir, name)):
      shutil.copytree(os.path.join(workdir, name), os.path.join(out, name), dirs_exist_ok=True)
  if os.path.exists(os.path.join(workdir, metric_logging.METRICS_FILE)):
    shutil.copy(os.path.join(workdir, metric_logging.METRICS_FILE), out)
  configuration.write_config(new, out)

  task, trainer = loop.build_run(config, workdir)
  _, new_trainer = loop.build_run(new, out)
  convert = stack_layout.to_scanned if scan_layers else stack_layout.to_unrolled
  history = metric_logging.read_history(workdir)
  best = f'eval/{task.best_metric}'
  target = checkpointing.Checkpointer(
      loop.checkpoint_dir(out), keep=len(steps), best_metric=best, best_mode=task.best_mode
  )
  try:
    for step in steps:
      _, state, data_state = loop.restore_state(source, step, trainer, config)
      state = state.replace(params=convert(state.params), opt_state=convert(state.opt_state))
      mismatches = checkpointing.shape_mismatches(state, new_trainer.abstract_state)
      if mismatches:
        raise RunError('converted state does not fit the new layout:\n' + '\n'.join(mismatches))
      state = jax.device_put(state, new_trainer.state_sharding)
      metrics = {
          k: v
          for record in history
          if record.get('step') == step
          for k, v in record.items()
          if k.startswith('eval/')
      }
      target.save(step, state, data_state, metrics=metrics or None)
  finally:
    target.close()
  return steps


FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Workdir of `run.py train` to convert.')
flags.DEFINE_string('out', None, 'New workdir for the converted copy.')
flags.DEFINE_bool('scan_layers', None, 'Target layout: true = scanned, false = unrolled.')
flags.DEFINE_multi_integer('step', None, 'Checkpoint step(s) to convert (default: all).')


def main(argv: list[str]) -> int:
  del argv
  try:
    steps = convert_workdir(FLAGS.workdir, FLAGS.out, FLAGS.scan_layers, FLAGS.step)
  except RunError as e:
    sys.stderr.write(f'convert_layout: error: {e}\n')
    return 1
  print(
      f'Converted steps {steps} of {FLAGS.workdir} into {FLAGS.out} (scan_layers={FLAGS.scan_layers}).'
  )
  return 0


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir', 'out', 'scan_layers'])
  app.run(main)
