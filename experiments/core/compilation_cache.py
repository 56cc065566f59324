"""JAX's persistent compilation cache, on by default for every run of this project.

A second run of the same shapes (a resumed run, `run.py eval`, the next sweep trial) loads
its XLA executables from disk instead of compiling them again.

  directory  $TRANSFORMER_COMPILATION_CACHE if set, else $XDG_CACHE_HOME/transformer-experiments/jax
             (default ~/.cache/transformer-experiments/jax). JAX's own
             JAX_COMPILATION_CACHE_DIR / jax.config, when already set, is respected.
  off        TRANSFORMER_COMPILATION_CACHE=off (also 0, false, none).

Every executable is cached, however fast it compiled (JAX's default skips those under 1 s,
which on CPU is most of a small model's steps). The cache is trusted code: do not point it at
a directory others can write to. Delete the directory to clear it.
"""

from __future__ import annotations

import os

ENV = 'TRANSFORMER_COMPILATION_CACHE'
OFF_VALUES = ('off', '0', 'false', 'none', 'no')


def default_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'transformer-experiments', 'jax')


def cache_dir() -> str | None:
  """The directory `setup` would use (None = off), from the environment only."""
  value = os.environ.get(ENV, '').strip()
  if value.lower() in OFF_VALUES:
    return None
  return os.path.abspath(os.path.expanduser(value)) if value else default_dir()


def setup() -> str | None:
  """Turns the cache on (idempotent; call before the first compilation). Returns its
  directory, or None when it is off."""
  import jax  # pylint: disable=g-import-not-at-top

  if os.environ.get(ENV, '').strip().lower() in OFF_VALUES:
    jax.config.update('jax_enable_compilation_cache', False)
    return None
  path = jax.config.jax_compilation_cache_dir
  if not path or os.environ.get(ENV):  # ours wins over JAX's only when set explicitly
    path = cache_dir()
    os.makedirs(path, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', path)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  return path
