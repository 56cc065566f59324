"""Many processes, one run: JAX's multi-controller runtime (`jax.distributed`).

Every process runs the same `run.py train` command; `initialize` connects them before JAX
touches a device, after which `jax.devices()` lists the devices of all processes and the
mesh (experiments/parallel/sharding.py) spans them. How the processes learn about each other:

  explicit   --coordinator_address=HOST:PORT --num_processes=N --process_id=I, or the
             environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
  automatic  a multi-process launch by Slurm (`srun`, SLURM_NTASKS > 1), Open MPI (`mpirun`,
             OMPI_COMM_WORLD_SIZE > 1), a Kubernetes indexed job or a multi-host Cloud TPU
             (TPU_WORKER_HOSTNAMES lists several hosts): `jax.distributed.initialize()` with
             no arguments, i.e. JAX's own cluster detection fills in the rest
  forced     --distributed=on: `jax.distributed.initialize()` whatever the environment (e.g.
             a TPU pod slice whose hosts JAX finds through the metadata server)
  off        a single process (the default when none of the above applies; also
             --distributed=off): exactly the single-process run.

See docs/multihost.md for Slurm, Cloud TPU and by-hand commands. On CPU the collectives
between processes go through gloo (JAX's default `jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from absl import logging

from experiments.core.task import RunError

MODES = ('auto', 'on', 'off')
ENV_ADDRESS, ENV_NUM, ENV_ID = 'JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'


class DistributedError(RunError, RuntimeError):
  """Bad multi-process settings, or the processes could not connect."""


def _int_env(name: str) -> int | None:
  value = os.environ.get(name, '')
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise DistributedError(f'${name}={value!r} is not an integer') from None


def detected_cluster(environ: dict[str, str] | None = None) -> str | None:
  """Name of the multi-process launcher found in the environment, or None."""
  env = os.environ if environ is None else environ

  def more_than_one(name: str) -> bool:
    return env.get(name, '1').isdigit() and int(env.get(name, '1')) > 1

  if 'SLURM_JOB_ID' in env and (
      more_than_one('SLURM_STEP_NUM_TASKS') or more_than_one('SLURM_NTASKS')
  ):
    return 'slurm'
  if more_than_one('OMPI_COMM_WORLD_SIZE'):
    return 'openmpi'
  if 'KUBERNETES_SERVICE_HOST' in env and 'JOB_COMPLETION_INDEX' in env:
    return 'kubernetes'
  if len([h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1:
    return 'cloud_tpu'
  return None


def settings(
    coordinator_address: str = '',
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str = 'auto',
) -> dict[str, Any] | None:
  """The keyword arguments for `jax.distributed.initialize`, or None for a single process.

  Flags win over the environment variables. Raises DistributedError for incomplete or
  impossible settings."""
  if mode not in MODES:
    raise DistributedError(f'--distributed must be one of {MODES}, got {mode!r}')
  address = coordinator_address or os.environ.get(ENV_ADDRESS, '')
  num = num_processes if num_processes is not None else _int_env(ENV_NUM)
  pid = process_id if process_id is not None else _int_env(ENV_ID)
  if mode == 'off':
    return None
  explicit = {'coordinator_address': address or None, 'num_processes': num, 'process_id': pid}
  given = [k for k, v in explicit.items() if v is not None]
  if given and (mode == 'auto' and not detected_cluster()) and len(given) < 3:
    missing = [f'--{k}' for k, v in explicit.items() if v is None]
    raise DistributedError(
        f'multi-process settings are incomplete: {", ".join(missing)} missing (or set '
        f'${ENV_ADDRESS}, ${ENV_NUM}, ${ENV_ID})'
    )
  if num is not None and num < 1:
    raise DistributedError(f'--num_processes must be >= 1, got {num}')
  if num is not None and pid is not None and not 0 <= pid < num:
    raise DistributedError(f'--process_id must be in [0, {num}), got {pid}')
  if len(given) == 3:
    return None if num == 1 else {k: v for k, v in explicit.items()}
  if mode == 'on' or detected_cluster():
    return {k: v for k, v in explicit.items() if v is not None}
  return None


def initialize(
    coordinator_address: str = '',
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str = 'auto',
) -> bool:
  """Connects this process to the others (see the module docstring); call before any other
  JAX call. Returns True when the run is multi-process."""
  kwargs = settings(coordinator_address, num_processes, process_id, mode)
  if kwargs is None:
    return False
  import jax  # pylint: disable=g-import-not-at-top

  cluster = detected_cluster()
  logging.info(
      'jax.distributed.initialize(%s)%s',
      ', '.join(f'{k}={v!r}' for k, v in kwargs.items()),
      f' on {cluster}' if cluster else '',
  )
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:
    raise DistributedError(f'jax.distributed.initialize failed: {e}') from None
  logging.info(
      'Process %d of %d; %d local / %d global devices.',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
  if jax.process_index() != 0:  # progress and info lines from process 0 only
    logging.set_verbosity(logging.WARNING)
  return True


def process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top

  return jax.process_index()


def is_primary() -> bool:
  """Process 0 writes metrics, TensorBoard, plots, config.json and shows progress."""
  return process_index() == 0


_BARRIERS = [0]  # barrier names must be unique per run


def sync(name: str, timeout_s: int = 3600) -> None:
  """Barrier: every process waits here until all have arrived (no-op with one process).

  Uses the coordination service of `jax.distributed` (no device collective, so a long wait,
  e.g. while process 0 prepares a dataset, is fine up to `timeout_s`)."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top

  _BARRIERS[0] += 1
  jax_distributed.global_state.client.wait_at_barrier(
      f'experiments:{name}:{_BARRIERS[0]}', timeout_in_ms=timeout_s * 1000
  )


def primary_first(fn: Callable[[], Any]) -> Any:
  """Runs `fn` on process 0, then (after a barrier) on the others: e.g. a task's setup that
  trains and writes a vocabulary once, which the other processes then read."""
  if is_primary():
    out = fn()
    sync('primary_first')
    return out
  sync('primary_first')
  return fn()


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is True on any (a collective: call it on all)."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return bool(np.max(multihost_utils.process_allgather(np.int32(bool(flag)))))


def gather_to_host(tree: Any) -> Any:
  """A pytree of global (possibly sharded across processes) arrays as NumPy on every host."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return multihost_utils.process_allgather(tree, tiled=True)


_COMPILED: dict[Any, Any] = {}


def aligned_call(jitted: Any, *args: Any) -> Any:
  """`jitted(*args)`; with several processes, a new input signature is first compiled
  explicitly and the processes meet at a barrier before running it, so that they reach its
  first collectives together (gloo on CPU gives a new communicator ~30 s to connect; a
  process still compiling a new batch shape would miss that)."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return jitted(*args)
  leaves = jax.tree.leaves(args)
  key = (
      id(jitted),
      tuple((x.shape, str(x.dtype), str(getattr(x, 'sharding', ''))) for x in leaves),
  )
  if key not in _COMPILED:
    _COMPILED[key] = jitted.lower(*args).compile()
    sync('compiled')
  return _COMPILED[key](*args)
