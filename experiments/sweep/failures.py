"""Why a trial failed: its point, or the environment it ran in.

A failure of the point (NaN loss, a config the experiment rejects, a crash of the model code)
is recorded: the trial becomes FAIL with its reason and the sweep goes on. A failure of the
environment (a missing dataset, a full disk, out of host or device memory - also when a
neighbour holds the GPU -, a locked workdir, an unreachable storage) says nothing about the
point: the worker puts the trial back (it stays RUNNING, its lock released, so that the next
worker or the same command runs it again from its checkpoint) and stops with a one-line error.
"""

from __future__ import annotations

import errno

from experiments.core.task import RunError

# Messages of device allocators (XLA's RESOURCE_EXHAUSTED, CUDA / cuDNN / NCCL out of memory).
_OUT_OF_MEMORY = ('resource_exhausted', 'out of memory', 'cuda_error_out_of_memory', 'oom when')
# Errors of files and devices that are not about the trial's own config.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOMEM,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.ENOENT,
    errno.ESTALE,
    errno.EMFILE,
    errno.ENFILE,
}
_ENVIRONMENT_ERRORS = (
    'DatasetUnavailableError',
    'WorkdirLockedError',
    'StorageError',
    'DistributedError',
)


class EnvironmentFailure(RunError, RuntimeError):
  """A trial could not run for a reason outside its point; it was put back."""


def is_environment(error: BaseException) -> bool:
  """Whether `error` is a failure of the environment rather than of the trial's point."""
  names = {c.__name__ for c in type(error).__mro__}
  if names & set(_ENVIRONMENT_ERRORS) or isinstance(error, MemoryError):
    return True
  if 'OperationalError' in names or 'InterfaceError' in names:  # the database went away
    return True
  if isinstance(error, OSError) and not isinstance(error, RunError):
    return error.errno in _ENVIRONMENT_ERRNOS or error.errno is None
  text = str(error).lower()
  return isinstance(error, RuntimeError) and any(m in text for m in _OUT_OF_MEMORY)


def reason(error: BaseException) -> str:
  """One line naming the error."""
  text = str(error).strip().splitlines()
  line = text[0] if text else ''
  return line if isinstance(error, RunError) and line else f'{type(error).__name__}: {line}'
