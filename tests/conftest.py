"""Shared, task-agnostic test helpers: loading config files and running `run.py`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
import sys
from collections.abc import Callable

import ml_collections
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA compilation dominates tiny test runs on CPU: share a persistent compilation cache
# between this process and the `run.py` subprocesses of one test session (same
# executables, so results are unchanged). Set before JAX is imported.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='jax_cache_')
# Tests run tiny models for a few steps: compile time, not run time, dominates, and
# LLVM's optimisation passes are most of it on CPU (about 3x faster without them).
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0'
  ).strip()


def _load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  path = os.path.join(REPO_ROOT, 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


@pytest.fixture(scope='session')
def load_config() -> Callable[..., ml_collections.ConfigDict]:
  """`load_config('digits')` -> the ConfigDict of configs/digits.py (a fresh copy)."""
  return _load_config


NO_TENSORFLOW = os.path.join(REPO_ROOT, 'tests', 'no_tensorflow')  # its sitecustomize hides TF


def cli_env(*, allow_tensorflow: bool = False, **extra: str) -> dict[str, str]:
  """Environment for subprocesses: this session's XLA flags and compilation cache, CPU, and,
  unless `allow_tensorflow`, TensorFlow hidden (tests/no_tensorflow): every `run.py` the suite
  starts shows that the verbs never need it."""
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env['JAX_PLATFORMS'] = 'cpu'
  if not allow_tensorflow:
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [NO_TENSORFLOW, env.get('PYTHONPATH')]))
  env.update(extra)
  return env


@pytest.fixture(scope='session')
def run_py() -> Callable[..., subprocess.CompletedProcess]:
  """`run_py('train', '--config', ..., env={...}, timeout=...)` runs `python run.py ...`
  in the repository root (TensorFlow hidden unless `allow_tensorflow=True`) and returns the
  CompletedProcess (text stdout/stderr; bytes with `text=False`, e.g. for `input=` bytes that
  are not UTF-8)."""

  def run(
      *args: str,
      env: dict[str, str] | None = None,
      timeout: float = 1200,
      allow_tensorflow: bool = False,
      text: bool = True,
      **popen_kwargs,
  ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'run.py'), *args],
        cwd=REPO_ROOT,
        env=cli_env(allow_tensorflow=allow_tensorflow, **(env or {})),
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
        **popen_kwargs,
    )

  return run


@pytest.fixture(scope='session')
def popen_run_py() -> Callable[..., subprocess.Popen]:
  """Like `run_py` but returns the running Popen (for signal / kill tests)."""

  def start(*args: str, env: dict[str, str] | None = None, log_path: str) -> subprocess.Popen:
    log = open(log_path, 'w')  # pylint: disable=consider-using-with
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, 'run.py'), *args],
        cwd=REPO_ROOT,
        env=cli_env(**(env or {})),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )

  return start


# A tiny model on the bundled digits: the cheapest real end-to-end training (no data dir).
TINY_DIGITS = {
    'num_train_steps': 30,
    'batch_size': 32,
    'eval_batch_size': 200,
    'warmup_steps': 5,
    'log_every_steps': 10,
    'eval_every_steps': 10,
    'checkpoint_every_steps': 10,
    'model.d_model': 16,
    'model.num_heads': 2,
    'model.num_layers': 1,
    'model.d_ff': 32,
}


def _override(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """A copy of `config` with {dotted field: value} set (the code's own configuration.with_overrides)."""
  from experiments.core import configuration  # pylint: disable=g-import-not-at-top

  return configuration.with_overrides(config, overrides)


@pytest.fixture(scope='session')
def tiny_digits_config() -> Callable[..., ml_collections.ConfigDict]:
  """`tiny_digits_config(**{'num_train_steps': 50})` -> configs/digits.py made tiny."""
  return lambda overrides=None, **kw: _override(
      _load_config('digits'), {**TINY_DIGITS, **(overrides or {}), **kw}
  )


@pytest.fixture(scope='session')
def tiny_digits_flags() -> Callable[..., list[str]]:
  """The same as command-line flags: ['--config', 'configs/digits.py', '--config.x=v', ...]."""

  def flags(overrides: dict | None = None) -> list[str]:
    merged = {**TINY_DIGITS, **(overrides or {})}
    return [
        '--config',
        os.path.join(REPO_ROOT, 'configs', 'digits.py'),
        *[f'--config.{k}={v}' for k, v in merged.items()],
    ]

  return flags


@pytest.fixture(scope='session')
def trained_workdir(tmp_path_factory, tiny_digits_config):
  """A finished tiny digits run (in-process): (workdir, TrainResult). Treat as read-only."""
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('trained') / 'run')
  result = loop.train_and_evaluate(tiny_digits_config(), workdir)
  return workdir, result
