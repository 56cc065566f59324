"""`run.py train` and `run.py eval` (task verbs live with their tasks)."""

from __future__ import annotations

import os
import sys

from absl import flags

from experiments.core.task import RunError, Verb

FLAGS = flags.FLAGS

TRAIN_USAGE = """\
python run.py train --config configs/NAME.py --workdir DIR [--config.FIELD=VALUE ...]

Trains the experiment of the config file. If DIR already holds checkpoints of the same
config, training RESUMES from the latest one (the data order and random numbers are
part of the checkpoint, so an interrupted run ends bit-identical to an uninterrupted
one). SIGTERM / Ctrl-C save a checkpoint and stop (exit code 128 + signal number).

Every config field can be overridden, e.g.
  python run.py train --config configs/digits.py --workdir /tmp/digits \\
      --config.num_train_steps=500 --config.model.num_layers=2 --config.seed=1
The config is locked: unknown fields and wrong types are errors, and impossible
values stop the run before anything is written.

DIR receives config.json, metrics.jsonl, TensorBoard files (tensorboard --logdir DIR),
checkpoints/ (last N + best by the validation metric) and plots/.
Data: $TRANSFORMER_DATA_DIR (or config.data.data_dir) holds mnist/, multi30k/, ...
"""

EVAL_USAGE = """\
python run.py eval --workdir DIR [--checkpoint latest|best|STEP] [--split NAME] [--average_last N]

Restores a checkpoint of DIR (default: latest), evaluates one split (default: the
task's test split, e.g. 'test'; 'validation' is the split used during training),
prints the metrics and appends them to DIR/metrics.jsonl. --average_last N evaluates
the mean of the parameters of the last N checkpoints instead (as Vaswani et al. 2017).
"""


def _define_train_flags() -> None:
  _define_config_flag()
  flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if it holds checkpoints).')
  flags.mark_flags_as_required(['workdir'])
  # Multi-process runs (experiments/parallel/distributed.py, docs/multihost.md).
  flags.DEFINE_enum(
      'distributed',
      'auto',
      ['auto', 'on', 'off'],
      'jax.distributed: auto = when the flags below (or $JAX_COORDINATOR_ADDRESS, '
      '$JAX_NUM_PROCESSES, $JAX_PROCESS_ID) or a multi-process Slurm/Open MPI/Kubernetes/'
      'Cloud TPU launch say so; on = always (JAX detects the cluster); off = one process.',
  )
  flags.DEFINE_string('coordinator_address', '', 'HOST:PORT of process 0 (multi-process).')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process).')
  flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1 (multi-process).')


PREPARE_USAGE = """\
python run.py prepare --config configs/NAME.py [--config.FIELD=VALUE ...]

Prepares the config's dataset once, as ArrayRecord files that training, evaluation and sweeps
read without TensorFlow (in config.data.tfds_data_dir, default ~/tensorflow_datasets). TFDS's
own datasets (MNIST, Fashion-MNIST, WMT14) need TensorFlow for this one step:
  pip install -e '.[prepare]'
Run it on any CPU machine and copy the prepared folder to the accelerator machine. Multi30k is
prepared without TensorFlow (also on first use); the digits and the LM's text need nothing.
"""

DOCTOR_USAGE = """\
python run.py doctor

Checks this machine in a few minutes and prints one table (exit 1 if a row FAILs): backend,
devices and versions; the bf16 and fp32 matmul peak; fused (cuDNN on NVIDIA GPUs) and chunked
attention against the reference; 50 training steps of a tiny classifier, translator and LM
through the real trainer (loss, steps/s, MFU); a checkpoint save/restore round trip; a
data-parallel step over all local devices against one device. Needs no data folder.
"""


def _define_config_flag() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file(
      'config',
      None,
      'Config file, e.g. configs/mnist.py (or configs/x.py:ARG); '
      'override fields with --config.FIELD=VALUE.',
      lock_config=True,
  )
  flags.mark_flags_as_required(['config'])


def _prepare_main(argv: list[str]) -> int:
  if argv:
    return error(f'unexpected arguments {argv}; see python run.py prepare --help', 2)
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  from experiments.core import registry  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  config = FLAGS.config
  try:
    task_class = registry.task_class(config.get('task', ''))
    task_class.validate_config(config)
    lines = task_class(config).prepare_data()
  except RunError as e:
    return error(str(e))
  print('\n'.join(lines))
  return 0


def _doctor_main(argv: list[str]) -> int:
  if argv:
    return error(f'unexpected arguments {argv}; see python run.py doctor --help', 2)
  from experiments import doctor  # pylint: disable=g-import-not-at-top
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  return doctor.main()


def _define_eval_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Run directory written by `run.py train`.')
  flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step number.")
  flags.DEFINE_string('split', '', "Split to evaluate (default: the task's test split).")
  flags.DEFINE_integer(
      'average_last', 0, 'Evaluate the mean of the last N checkpoints (0 = one checkpoint).'
  )
  flags.mark_flags_as_required(['workdir'])


class ArgumentError(RunError, ValueError):
  """A bad command-line value."""


def error(message: str, code: int = 1) -> int:
  """Prints `run.py: error: message` to stderr and returns `code`."""
  sys.stderr.write(f'run.py: error: {message}\n')
  return code


def parse_checkpoint(value: str) -> str | int:
  if value in ('latest', 'best'):
    return value
  if value.isdigit():
    return int(value)
  raise ArgumentError(f"--checkpoint must be 'latest', 'best' or a step number, got {value!r}")


def restore_run(workdir: str, checkpoint: str, task: str, what: str):
  """`loop.restore_for_inference` of the run in `workdir` at --checkpoint `checkpoint`, which
  must be a run of `task` (`what` names it in the message, e.g. 'translation'), with the
  libraries' logs quieted first. Raises a RunError that says what is wrong (bad --checkpoint,
  no workdir or checkpoint, other task)."""
  from experiments.core import loop  # pylint: disable=g-import-not-at-top
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  restored = loop.restore_for_inference(workdir, parse_checkpoint(checkpoint))
  if restored.config.task != task:
    raise ArgumentError(f'{workdir} is a {restored.config.task!r} run, not a {what} run')
  return restored


def lines_exit_code(total: int, failures: int, inputs: str, failed: str) -> int:
  """Exit code of a verb over input lines (generate, translate) that read `total` lines, of
  which `failures` failed: 2 ('no input: give <inputs> ...') without a line, 1 ('<failures>
  of <total> <failed>') after a failure, else 0."""
  if total == 0:
    return error(f'no input: give {inputs} as arguments or lines on stdin', 2)
  if failures:
    return error(f'{failures} of {total} {failed}')
  return 0


def check_attention_flags(layer: int, num_layers: int, plot_dir: str, what: str = '') -> None:
  """--attention_layer within [-num_layers, num_layers) and, when given, a --plot_attention
  folder that exists or can be created; ArgumentError naming the flag otherwise. `what`
  qualifies the layers in the message (e.g. 'decoder ')."""
  if not -num_layers <= layer < num_layers:
    raise ArgumentError(
        f'--attention_layer={layer}: the model has {num_layers} {what}layers '
        f'(use 0..{num_layers - 1}, or -1 for the last)'
    )
  if plot_dir:
    try:
      os.makedirs(plot_dir, exist_ok=True)
    except OSError as e:
      raise ArgumentError(f'--plot_attention={plot_dir}: cannot create the folder ({e})') from None


def _train_main(argv: list[str]) -> int:
  if argv:
    return error(f'unexpected arguments {argv}; see python run.py train --help', 2)
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.core import configuration, loop  # pylint: disable=g-import-not-at-top
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  config, workdir = FLAGS.config, FLAGS.workdir
  from experiments.parallel import distributed  # pylint: disable=g-import-not-at-top

  try:  # before anything touches a device
    distributed.initialize(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed
    )
  except RunError as e:
    return error(str(e), 2)
  try:
    configuration.validate(config, jax.device_count())
  except ConfigError as e:
    return error(f'invalid config: {e}', 2)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    return error(f'--workdir {workdir} exists and is not a directory', 2)
  try:
    result = loop.train_and_evaluate(config, workdir)
  except RunError as e:
    return error(str(e))
  if result.interrupted:
    return 128 + result.interrupted
  print(result.summary)
  return 0


def _eval_main(argv: list[str]) -> int:
  if argv:
    return error(f'unexpected arguments {argv}; see python run.py eval --help', 2)
  from experiments.core import loop  # pylint: disable=g-import-not-at-top
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  average = FLAGS.average_last
  if average < 0:
    return error(f'--average_last must be >= 0 (0 = off), got {average}', 2)
  if average and FLAGS.checkpoint != 'latest':
    return error(f'--average_last averages the last {average} checkpoints; drop --checkpoint', 2)
  try:
    step, split, metrics = loop.evaluate_checkpoint(
        FLAGS.workdir, parse_checkpoint(FLAGS.checkpoint), FLAGS.split or None, average
    )
  except RunError as e:
    return error(str(e))
  which = f'mean of the last {average} checkpoints up to step' if average else 'checkpoint step'
  print(f'{split} split, {which} {step} ({FLAGS.workdir}):')
  for name, value in sorted(metrics.items()):
    print(f'  {name} = {value:.6g}')
  return 0


TRAIN = Verb(
    name='train',
    summary='train or resume an experiment from a config file',
    usage=TRAIN_USAGE,
    define_flags=_define_train_flags,
    main=_train_main,
)
EVAL = Verb(
    name='eval',
    summary='evaluate a checkpoint of a workdir on a split',
    usage=EVAL_USAGE,
    define_flags=_define_eval_flags,
    main=_eval_main,
)
PREPARE = Verb(
    name='prepare',
    summary="prepare a config's dataset once (ArrayRecord; TFDS's own datasets need '.[prepare]')",
    usage=PREPARE_USAGE,
    define_flags=_define_config_flag,
    main=_prepare_main,
)
DOCTOR = Verb(
    name='doctor',
    summary='check this machine: devices, peaks, attention kernels, tiny training runs (a table)',
    usage=DOCTOR_USAGE,
    define_flags=lambda: None,
    main=_doctor_main,
)
