"""`run.py sweep` and `run.py report`."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

from absl import flags

from experiments.core.task import RunError, Verb
from experiments.verbs import error as _error

FLAGS = flags.FLAGS

SWEEP_USAGE = """\
python run.py sweep --config configs/sweeps/NAME.py --workdir DIR [--workers N]
                    [--storage URL] [--reuse DIR[,DIR...]] [--config.FIELD=VALUE ...]

Runs (or resumes) the hyperparameter sweep of the sweep config on Optuna. Each trial is an
ordinary training run in DIR/trials/<number>/ (checkpoints, metrics.jsonl, plots).
At the end DIR/report.md and DIR/plots/*.png are written (also: python run.py report).
A tuned ablation (experiments/sweep/tune_compare.py, e.g. configs/ablations/scaling.py:lm) runs
as two sweeps: DIR/tune (each variant at each learning rate), then DIR/compare (each variant at
its best rate, every seed).

The same command again RESUMES: finished trials are kept, an interrupted trial continues from
its own latest checkpoint (also after kill -9), the remaining trials run. SIGTERM / Ctrl-C
checkpoint the running trials and stop (exit 128 + signal). SIGUSR1 (kill -USR1 PID) lets
each worker finish its current trial, then stops it, and no further stage starts (exit
128 + 10): nothing is left half-trained, e.g. before the sweep dir moves to another machine.
A trial that fails (NaN loss, a point the experiment rejects) is recorded with its reason and
the sweep goes on; a failure of the environment (missing data, a full disk, out of memory, a
locked workdir) stops the worker with an error and puts the trial back, to run again with the
same command.

  --workers N    N worker processes on this machine share the study, one trial each at a time:
                 one GPU per worker (CUDA_VISIBLE_DEVICES), or on CPU each pinned to its own
                 share of the cores. At most one worker per core (or GPU) unless
                 --oversubscribe.
  --storage URL  default: the journal file DIR/journal.log (no server). A database URL
                 (postgresql://USER@HOST:5432/DB, or $TRANSFORMER_SWEEP_STORAGE) lets workers on
                 many machines share the study: run the same command on each machine. Give the
                 password with $PGPASSWORD or ~/.pgpass, not in the URL (it is masked anyway).
  --reuse DIRS   other sweeps' dirs (or tuned ablations' DIRs): a trial whose run config and
                 seed equal a COMPLETE run there takes that run's files and results instead of
                 training (experiments/sweep/twins.py), e.g. ablations on one base share the
                 base's runs. Journal-file sweeps only.

Override sweep fields (--config.num_trials=20, --config.sampler=random) and the base experiment
(--config.base.num_train_steps=200). A changed sweep config under an existing DIR is an error.
"""

REPORT_USAGE = """\
python run.py report --workdir DIR [--storage URL]

Writes DIR/report.md (one row per trial, the best trial, mean +- std over seeds) and
DIR/plots/*.png (objective vs each swept value, learning curves, optimization history,
parameter importances) from the sweep's study, and prints where they are. Works while the
sweep runs. --storage: as for `run.py sweep` when the sweep used a database.
"""


def _define_sweep_flags() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file(
      'config',
      None,
      'Sweep config file, e.g. configs/sweeps/digits_lr.py; override with --config.FIELD=VALUE.',
      lock_config=True,
  )
  flags.DEFINE_string('workdir', None, 'Sweep directory (created; resumed if it exists).')
  flags.DEFINE_integer('workers', 1, 'Worker processes on this machine.', lower_bound=1)
  flags.DEFINE_bool(
      'oversubscribe', False, 'Allow --workers above the CPU cores (or GPUs) of this machine.'
  )
  flags.DEFINE_string(
      'storage', '', 'Optuna storage URL (default: $TRANSFORMER_SWEEP_STORAGE or DIR/journal.log).'
  )
  flags.DEFINE_list(
      'reuse',
      [],
      'Sweep dirs whose COMPLETE runs of the same config and seed are taken, not trained again.',
  )
  flags.mark_flags_as_required(['config', 'workdir'])


def _define_report_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Sweep directory written by `run.py sweep`.')
  flags.DEFINE_string('storage', '', 'Optuna storage URL if the sweep used a database.')
  flags.mark_flags_as_required(['workdir'])


def open_sweep(config, config_path: str, workdir: str, url: str | None, num_devices: int = 0):
  """(dims, study, storage description) with every check done. `num_devices` 0 = this
  process's JAX devices (a launcher passes 1: its workers get one device each, and it must
  not initialise a GPU itself)."""
  import optuna  # pylint: disable=g-import-not-at-top
  from experiments.sweep import spec, storage, study  # pylint: disable=g-import-not-at-top

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  if not num_devices:
    import jax  # pylint: disable=g-import-not-at-top

    num_devices = jax.device_count()
  dims = spec.validate(config, num_devices)
  where = storage.describe(url, workdir)
  try:
    store = storage.open_storage(url, workdir)
    opened = study.open_study(
        config, dims, store, study.study_name(config, config_path), workdir, where
    )
  except RunError:
    raise
  except OSError as e:  # the sweep dir: not a directory, read-only, disk full
    raise WorkdirError(f'--workdir {workdir}: {_os_reason(e)}') from None
  except Exception as e:  # pylint: disable=broad-except  # database errors while creating it
    raise storage.StorageError(f'sweep storage {where}: {storage.scrub(str(e), url)}') from None
  return dims, opened, where


class WorkdirError(RunError, OSError):
  """The sweep dir cannot be created, read or written."""


def _os_reason(e: OSError) -> str:
  where = f' ({e.filename})' if e.filename else ''
  return f'{e.strerror or e}{where}'


def check_workers(workers: int, cpus: int, gpus: int, oversubscribe: bool) -> None:
  """--workers N fits this machine: at most one worker per GPU (with GPUs) or per core."""
  have, what = (gpus, 'GPUs') if gpus else (cpus, 'CPU cores')
  if workers > have and not oversubscribe:
    raise WorkersError(
        f'--workers {workers} is more than the {have} {what} of this machine; use at most '
        f'{have}, or --oversubscribe to share them'
    )


class WorkersError(RunError, ValueError):
  """More workers than the machine has devices for."""


def run_worker(
    config,
    config_path: str,
    workdir: str,
    url: str | None,
    reuse: tuple[str, ...] = (),
    name: str = 'worker',
) -> int:
  """One worker in this process (also the body of each --workers process). `reuse`: the
  sweep dirs of --reuse (twins.reuse_sources)."""
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  from experiments.sweep import failures, storage, worker  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  try:
    dims, opened, _ = open_sweep(config, config_path, workdir, url)
    return worker.Worker(
        config, dims, opened, workdir, name=name, shared_dir=not url, reuse=reuse
    ).run()
  except RunError as e:
    return _error(storage.scrub(str(e), url), 2 if isinstance(e, ValueError) else 1)
  except Exception as e:  # pylint: disable=broad-except
    if not failures.is_environment(e):  # a bug: its traceback
      raise
    # Between trials (the storage went away, the disk filled up): no trial was taken.
    return _error(f'{name}: {storage.scrub(failures.reason(e), url)}', 1)


def _sweep_main(argv: list[str]) -> int:
  if argv:
    return _error(f'unexpected arguments {argv}; see python run.py sweep --help', 2)
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  from experiments.sweep import launcher, staged, storage, tune_compare, twins  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  config, workdir = FLAGS.config, FLAGS.workdir
  config_path = (
      FLAGS['config'].config_filename if hasattr(FLAGS['config'], 'config_filename') else ''
  )
  url = storage.storage_url(FLAGS.storage)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    return _error(f'--workdir {workdir} exists and is not a directory', 2)
  try:
    if FLAGS.workers > 1:
      cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
      check_workers(FLAGS.workers, cpus or 1, len(launcher.visible_gpus()), FLAGS.oversubscribe)
    if FLAGS.reuse and url:
      raise twins.ReuseError('--reuse takes runs from journal files; not with --storage')
    reuse = tuple(twins.reuse_sources(FLAGS.reuse))
  except RunError as e:
    return _error(str(e), 2)
  with no_stage_after_sigusr1():
    if tune_compare.is_tuned(config):  # two sweeps: DIR/tune, then DIR/compare
      return staged.run_stages(
          config,
          workdir,
          url,
          lambda stage, stage_dir: run_sweep(stage, config_path, stage_dir, url, reuse),
      )
    return run_sweep(config, config_path, workdir, url, reuse)


_drained: list[int] = []  # the SIGUSR1 this process got outside the workers' trials


def _on_drain(signum, frame):  # pylint: disable=unused-argument
  _drained.append(signum)
  print(f'[sweep] {signal.Signals(signum).name}: no further stage starts', flush=True)


@contextlib.contextmanager
def no_stage_after_sigusr1():
  """A SIGUSR1 outside the workers' trials (e.g. while a stage's report is written, where its
  default action would end the process) makes every later `run_sweep` return 128 + SIGUSR1 at once:
  no further stage starts."""
  _drained.clear()
  previous = signal.signal(signal.SIGUSR1, _on_drain)
  try:
    yield
  finally:
    signal.signal(signal.SIGUSR1, previous)


def run_sweep(
    config, config_path: str, workdir: str, url: str | None, reuse: tuple[str, ...] = ()
) -> int:
  """Runs (or resumes) one sweep with --workers workers, writes its report; the exit code."""
  from experiments.analysis import report  # pylint: disable=g-import-not-at-top
  from experiments.sweep import launcher, spec, storage  # pylint: disable=g-import-not-at-top

  if _drained:
    return 128 + _drained[-1]

  try:  # every check before any trial runs
    dims, opened, where = open_sweep(
        config, config_path, workdir, url, 1 if FLAGS.workers > 1 else 0
    )
  except RunError as e:
    return _error(storage.scrub(str(e), url), 2 if isinstance(e, ValueError) else 1)
  print(f'[sweep] study {opened.study_name!r} in {where}; trials in {workdir}/trials/', flush=True)
  args: dict[str, Any] = {
      'config': config,
      'config_path': config_path,
      'workdir': workdir,
      'url': url,
      'reuse': reuse,
  }
  if FLAGS.workers == 1:
    code = run_worker(**args)
  else:
    code = launcher.launch(FLAGS.workers, args, run_worker)
  try:
    paths = report.write_report(workdir, url)
    print(f'[sweep] report: {paths[0]}\n[sweep] plots:  {", ".join(paths[1:])}', flush=True)
  except (RunError, OSError) as e:
    sys.stderr.write(f'run.py: warning: no report: {storage.scrub(str(e), url)}\n')
  return sweep_status(opened, spec.total_runs(config, dims), code)


def sweep_status(opened, total: int, code: int) -> int:
  """Prints whether the sweep is complete; an exit code of 0 needs no RUNNING trial left."""
  from experiments.sweep import study  # pylint: disable=g-import-not-at-top

  done, running = study.progress(opened)
  if not running and done >= total:
    print(f'[sweep] complete: {done} of {total} runs finished', flush=True)
    return code
  shown = ', '.join(map(str, running)) or 'none'
  print(f'[sweep] not complete: {done} of {total} runs finished; RUNNING: {shown}', flush=True)
  if code == 0:
    return _error(
        f'the sweep is not complete: trial(s) {shown} still RUNNING in other workers; '
        'run the same command again to take part',
        1,
    )
  return code


def _report_main(argv: list[str]) -> int:
  if argv:
    return _error(f'unexpected arguments {argv}; see python run.py report --help', 2)
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  from experiments.analysis import report  # pylint: disable=g-import-not-at-top
  from experiments.sweep import storage  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  url = storage.storage_url(FLAGS.storage)
  try:
    paths = report.write_report(FLAGS.workdir, url)
  except RunError as e:
    return _error(storage.scrub(str(e), url))
  except OSError as e:  # a read-only or full sweep dir
    return _error(f'--workdir {FLAGS.workdir}: {_os_reason(e)}')
  print(f'Report: {paths[0]}')
  print('Plots:  ' + ', '.join(paths[1:]))
  return 0


SWEEP = Verb(
    name='sweep',
    summary='run or resume a hyperparameter sweep (Optuna) of a sweep config',
    usage=SWEEP_USAGE,
    define_flags=_define_sweep_flags,
    main=_sweep_main,
)
REPORT = Verb(
    name='report',
    summary='write report.md and plots of a sweep directory',
    usage=REPORT_USAGE,
    define_flags=_define_report_flags,
    main=_report_main,
)
