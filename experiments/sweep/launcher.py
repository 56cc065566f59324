"""`--workers N`: N worker processes on this machine share one study.

Each worker is a fresh (spawned) Python process running experiments.sweep.worker, with one
trial at a time on its own devices:
  GPUs  CUDA_VISIBLE_DEVICES = one GPU per worker (round robin over the visible GPUs); with more
        workers than GPUs, trials share a GPU and XLA_PYTHON_CLIENT_PREALLOCATE=false.
  CPU   the worker is pinned (sched_setaffinity) to its own share of this process's cores, so
        2 workers on 2 cores do not fight over them.
A worker dies with the launcher (PR_SET_PDEATHSIG: SIGTERM, i.e. its trial is checkpointed);
SIGTERM / Ctrl-C / SIGUSR1 of the launcher is passed on to every worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def visible_gpus() -> list[str]:
  """GPU ids from CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`, else none."""
  env = os.environ.get('CUDA_VISIBLE_DEVICES')
  if env is not None:
    return [g for g in env.split(',') if g.strip() and g.strip() != '-1']
  try:
    out = subprocess.run(
        ['nvidia-smi', '-L'], capture_output=True, text=True, timeout=20, check=True
    ).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith('GPU ')]


def placement(index: int, workers: int, cpus: list[int], gpus: list[str]) -> dict[str, Any]:
  """Environment and CPU set of worker `index` of `workers`."""
  env = {}
  if gpus:
    env['CUDA_VISIBLE_DEVICES'] = gpus[index % len(gpus)]
    if workers > len(gpus):
      env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  if workers <= len(cpus):
    share = cpus[index * len(cpus) // workers : (index + 1) * len(cpus) // workers]
  else:
    share = [cpus[index % len(cpus)]]
  return {'env': env, 'cpus': share}


def _child(
    index: int, where: dict[str, Any], args: dict[str, Any], run: Callable[..., int]
) -> None:
  try:
    ctypes.CDLL('libc.so.6', use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
  except OSError:
    pass  # not Linux: workers then outlive a killed launcher
  os.setpgrp()  # Ctrl-C reaches the launcher only, which passes it on once (a second SIGINT
  # would make the trainer stop without its checkpoint)
  os.environ.update(where['env'])
  if where['cpus'] and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, where['cpus'])
  raise SystemExit(run(**args, name=f'worker {index}'))


def launch(workers: int, args: dict[str, Any], run: Callable[..., int]) -> int:
  """Runs `workers` worker processes, each `run(**args, name=...)` (a module-level function,
  e.g. cli.run_worker: the spawned process imports it by name); the worst exit code."""
  cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
  gpus = visible_gpus()
  ctx = multiprocessing.get_context('spawn')
  procs = []
  for i in range(workers):
    where = placement(i, workers, cpus or [0], gpus)
    print(
        f'[sweep] worker {i}: cpus {where["cpus"] if cpus else "all"}'
        + (f', CUDA_VISIBLE_DEVICES={where["env"]["CUDA_VISIBLE_DEVICES"]}' if gpus else ''),
        flush=True,
    )
    p = ctx.Process(target=_child, args=(i, where, args, run), name=f'sweep-worker-{i}')
    p.start()
    procs.append(p)

  def forward(signum, frame):  # pylint: disable=unused-argument
    for p in procs:
      if p.is_alive():
        os.kill(p.pid, signum)

  forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
  previous = {s: signal.signal(s, forward) for s in forwarded}
  try:  # reap each worker as it ends: a killed worker must not linger as a "live" zombie pid
    running = list(procs)
    while running:
      multiprocessing.connection.wait([p.sentinel for p in running])
      for p in [p for p in running if not p.is_alive()]:
        p.join()
        running.remove(p)
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
  codes = [p.exitcode or 0 for p in procs]
  codes = [c if c >= 0 else 128 - c for c in codes]  # killed by signal -s -> 128 + s
  return max(codes)
