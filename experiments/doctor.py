"""`run.py doctor`: the check to run first on a new machine. One table, non-zero exit on a failure.

Rows, in order (each measured now, on this machine's default JAX backend):
  environment        backend, devices, Python / JAX / library versions, TensorFlow (not needed)
  matmul peak        the fastest n x n matmul in bf16 and fp32 (TFLOP/s): the MFU denominator
  attention fused    on NVIDIA GPUs bf16 `fused` compiles to cuDNN's fused kernel; matches `reference`
  attention chunked  the memory-efficient `chunked` implementation matches `reference`
  train <task>       50 steps of the real trainer and task (`run.py train` minus the files) of a
                     tiny classifier (bundled digits), translator and LM (a generated Multi30k-like
                     corpus): loss falls, steps/s, MFU of the step's XLA FLOPs against the bf16 peak
  checkpoint         orbax save / restore round trip of the classifier's state, bit-exact
  mesh               a data-parallel step over every local device gives the one-device loss
  no TensorFlow      nothing above imported TensorFlow
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.core import checkpointing
from experiments.core import configuration
from experiments.core import registry
from experiments.core.trainer import Trainer
from experiments.text import synthetic_corpus
from transformer.attention_config import AttentionConfig
from transformer.attention_impl import attend

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'tensorflow-datasets')
TRAIN_STEPS = 50


@dataclasses.dataclass
class Row:
  check: str
  ok: bool | None  # None: information only
  detail: str

  @property
  def status(self) -> str:
    return {True: 'PASS', False: 'FAIL', None: 'info'}[self.ok]


# ---- measurements --------------------------------------------------------------------------


def timed_best(fn: Callable[[], object], repeats: int) -> float:
  """Fastest of `repeats` calls of `fn` (which must block until its work is done), seconds."""
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def matmul_peak(dtype, n: int, repeats: int = 5) -> float:
  """FLOP/s of the fastest jitted n x n @ n x n matmul in `dtype` (compiled and warmed first)."""
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  run = lambda: matmul(a, a).block_until_ready()  # noqa: E731
  run()
  return 2 * n**3 / timed_best(run, repeats)


def default_matmul_size() -> int:
  return 1024 if jax.default_backend() == 'cpu' else 8192


def on_cuda() -> bool:
  return jax.default_backend() == 'gpu' and 'cuda' in jax.devices()[0].client.platform_version


# ---- rows ----------------------------------------------------------------------------------


def environment_rows() -> list[Row]:
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  versions = []
  for name in LIBRARIES:
    try:
      versions.append(f'{name} {importlib.metadata.version(name)}')
    except importlib.metadata.PackageNotFoundError:
      versions.append(f'{name} missing')
  tf = (
      'installed (only `run.py prepare` uses it)'
      if importlib.util.find_spec('tensorflow')
      else ('not installed (not needed to train)')
  )
  return [
      Row('backend', None, f'{jax.default_backend()}: {len(devices)} x {", ".join(kinds)}'),
      Row('versions', None, f'Python {platform.python_version()}, ' + ', '.join(versions)),
      Row('TensorFlow', None, tf),
  ]


def peak_rows(n: int) -> tuple[list[Row], float]:
  """Rows for the bf16 and fp32 peaks, and the bf16 peak (FLOP/s)."""
  bf16, fp32 = matmul_peak(jnp.bfloat16, n), matmul_peak(jnp.float32, n)
  note = ' (float32 matmuls use TF32 by default on NVIDIA GPUs)' if on_cuda() else ''
  return [
      Row('matmul peak bf16', None, f'{bf16 / 1e12:.1f} TFLOP/s (n={n})'),
      Row('matmul peak fp32', None, f'{fp32 / 1e12:.1f} TFLOP/s (n={n}){note}'),
  ], bf16


def _qkv(shape, dtype):
  rng = np.random.default_rng(0)
  return [jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3)]


def _relative_error(got, want) -> float:
  got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
  return float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-12))


REFERENCE = AttentionConfig(implementation='reference')


def fused_attention_row() -> Row:
  """bf16 causal self-attention [2, 4, 256, 64]: `fused` vs the float32 `reference`."""
  q, k, v = _qkv((2, 4, 256, 64), jnp.bfloat16)
  fused = jax.jit(
      lambda q, k, v: attend(q, k, v, AttentionConfig(implementation='fused'), causal=True)[0]
  )
  hlo = fused.lower(q, k, v).compile().as_text().lower()
  f32 = [x.astype(jnp.float32) for x in (q, k, v)]
  err = _relative_error(fused(q, k, v), attend(*f32, REFERENCE, causal=True)[0])
  close = err <= 2e-2
  if on_cuda():
    cudnn = 'cudnn' in hlo
    kernel = "cuDNN's fused kernel" if cudnn else 'NOT cuDNN (XLA fallback)'
    return Row('attention fused', cudnn and close, f'bf16 -> {kernel}; max rel. error {err:.1e}')
  return Row(
      'attention fused',
      close,
      f'no cuDNN on {jax.default_backend()}: XLA; max rel. error {err:.1e}',
  )


def chunked_attention_row() -> Row:
  """float32 causal self-attention, 256 tokens in chunks of 64, vs `reference`, both with
  full-precision matmuls (on NVIDIA GPUs float32 matmuls are TF32 by default: ~1e-4 apart)."""
  q, k, v = _qkv((2, 4, 256, 64), jnp.float32)
  chunked = AttentionConfig(implementation='chunked', query_chunk_size=64, key_chunk_size=64)
  with jax.default_matmul_precision('highest'):
    err = _relative_error(
        jax.jit(lambda q, k, v: attend(q, k, v, chunked, causal=True)[0])(q, k, v),
        attend(q, k, v, REFERENCE, causal=True)[0],
    )
  return Row('attention chunked', err <= 1e-4, f'float32, chunks of 64: max rel. error {err:.1e}')


# ---- tiny training runs ---------------------------------------------------------------------


def _load_config(name: str) -> ml_collections.ConfigDict:
  path = os.path.join(REPO_ROOT, 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'doctor_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# model.dtype 'auto': bf16 compute on accelerators, float32 on CPUs (experiments/core/model_config.py).
TINY_MODEL = {'model.d_model': 64, 'model.num_heads': 4, 'model.d_ff': 128, 'model.dtype': 'auto'}
TINY_TEXT = {
    'data.data_dir': '{corpus}',
    'data.tfds_data_dir': '{corpus}/tfds',
    'data.verify_checksums': False,
    'data.vocab_size': 96,
    'data.tokens_per_batch': 1024,
    'data.length_multiple': 32,  # = max_train_len: one batch shape, one compilation
    'data.max_train_len': 32,
    'model.max_len': 64,
}
RUNS = {  # row name -> (config file, overrides)
    'classifier': ('digits', {**TINY_MODEL, 'model.num_layers': 2, 'batch_size': 128}),
    'translator': (
        'translation_multi30k',
        {
            **TINY_MODEL,
            **TINY_TEXT,
            'model.num_encoder_layers': 2,
            'model.num_decoder_layers': 2,
        },
    ),
    'LM': ('lm_multi30k', {**TINY_MODEL, **TINY_TEXT, 'model.num_layers': 2}),
}


def tiny_config(name: str, corpus: str) -> ml_collections.ConfigDict:
  """The config of doctor run `name` (RUNS), bf16 on accelerators, data under `corpus`."""
  file, overrides = RUNS[name]
  config = _load_config(file)
  overrides = {
      k: v.format(corpus=corpus) if isinstance(v, str) else v for k, v in overrides.items()
  }
  overrides.update(num_train_steps=TRAIN_STEPS, warmup_steps=5, seed=0)
  return configuration.with_overrides(config, overrides)


@dataclasses.dataclass
class TrainRun:
  trainer: Trainer
  state: object
  source: object
  losses: list[float]
  steps_per_s: float
  flops: float


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainRun:
  """TRAIN_STEPS steps of the task's real data, model, loss and the trainer's compiled step, then
  the same batches again, timed (every batch shape is compiled by then): steps/s."""
  task = registry.task_class(config.task)(config)
  task.setup(workdir)
  trainer = Trainer(config, task)
  state = trainer.init_state()
  source = task.train_source()
  batches = [source.batch(step) for step in range(TRAIN_STEPS)]
  losses = []
  for batch in batches:
    state, metrics = trainer.train_step(state, batch)
    losses.append(metrics['train/loss'])
  losses = [float(x) for x in losses]
  start = time.perf_counter()
  for batch in batches:
    state, _ = trainer.train_step(state, batch)
  jax.block_until_ready(state)
  rate = TRAIN_STEPS / (time.perf_counter() - start)
  flops = trainer.step_flops(state, batches[0])
  return TrainRun(trainer, state, source, losses, rate, flops)


def train_row(name: str, run: TrainRun, peak: float) -> Row:
  first, last = np.mean(run.losses[:5]), np.mean(run.losses[-5:])
  ok = bool(np.all(np.isfinite(run.losses)) and last < first)
  mfu = f', MFU {run.flops * run.steps_per_s / peak:.1%}' if run.flops else ''
  return Row(
      f'train {name}',
      ok,
      f'{TRAIN_STEPS} steps: loss {first:.3f} -> {last:.3f}, {run.steps_per_s:.1f} steps/s{mfu}',
  )


def checkpoint_row(run: TrainRun, directory: str) -> Row:
  ckpt = checkpointing.Checkpointer(directory, keep=1, best_metric='eval/accuracy', best_mode='max')
  try:
    ckpt.save(TRAIN_STEPS, run.state, run.source.state(TRAIN_STEPS))
    step, restored, data_state = ckpt.restore('latest', run.trainer.abstract_state)
  finally:
    ckpt.close()
  same = jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), run.state, restored))
  ok = same and step == TRAIN_STEPS and data_state == run.source.state(TRAIN_STEPS)
  return Row(
      'checkpoint', ok, f'save + restore of step {step}: ' + ('bit-exact' if ok else 'DIFFERS')
  )


def mesh_row(config: ml_collections.ConfigDict, workdir: str) -> Row:
  n = jax.local_device_count()
  if n == 1:
    return Row('mesh', True, '1 local device: nothing to shard')
  losses = {}
  for data in (1, n):
    c = configuration.with_overrides(config, {'mesh.data': data, 'batch_size': 16 * n})
    run_workdir = os.path.join(workdir, f'mesh{data}')
    task = registry.task_class(c.task)(c)
    task.setup(run_workdir)
    trainer = Trainer(c, task)
    _, metrics = trainer.train_step(trainer.init_state(), task.train_source().batch(0))
    losses[data] = float(metrics['train/loss'])
  err = abs(losses[n] - losses[1]) / abs(losses[1])
  return Row(
      'mesh',
      err < 1e-3,
      f'data-parallel over {n} devices: loss {losses[n]:.6f} vs 1 device {losses[1]:.6f}',
  )


# ---- the table -----------------------------------------------------------------------------


def run_checks(emit: Callable[[Row], None]) -> list[Row]:
  """Runs every check, calling `emit(row)` as each finishes; a check that raises is a FAIL row."""
  rows: list[Row] = []

  def add(new: list[Row]) -> None:
    for row in new:
      rows.append(row)
      emit(row)

  def guarded(check: str, fn: Callable[[], list[Row]]) -> None:
    try:
      add(fn())
    except Exception as e:  # pylint: disable=broad-except
      add([Row(check, False, f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}')])

  guarded('environment', environment_rows)
  peak = [0.0]

  def peaks() -> list[Row]:
    new, peak[0] = peak_rows(default_matmul_size())
    return new

  guarded('matmul peak', peaks)
  guarded('attention fused', lambda: [fused_attention_row()])
  guarded('attention chunked', lambda: [chunked_attention_row()])
  with tempfile.TemporaryDirectory(prefix='doctor_') as tmp:
    corpus = os.path.join(tmp, 'data')
    synthetic_corpus.write_corpus(
        os.path.join(corpus, 'multi30k'),
        {'train': 2000, 'validation': 40, 'test_2016': 40, 'test_2017': 8, 'test_2018': 8},
    )
    runs = {}
    for name in RUNS:

      def one(name=name) -> list[Row]:
        runs[name] = train(tiny_config(name, corpus), os.path.join(tmp, name))
        return [train_row(name, runs[name], peak[0] or float('nan'))]

      guarded(f'train {name}', one)
    if 'classifier' in runs:
      guarded('checkpoint', lambda: [checkpoint_row(runs['classifier'], os.path.join(tmp, 'ckpt'))])
    guarded('mesh', lambda: [mesh_row(tiny_config('classifier', corpus), tmp)])
  imported = 'tensorflow' in sys.modules
  add(
      [
          Row(
              'no TensorFlow',
              not imported,
              'TensorFlow was imported' if imported else 'never imported',
          )
      ]
  )
  return rows


def print_row(row: Row) -> None:
  print(f'{row.check:20s} {row.status:5s} {row.detail}', flush=True)


def _quiet() -> int:
  """Only the table: no INFO lines of the tasks and no TFDS progress bars. Returns the absl
  verbosity it replaced."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  before = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  tfds.disable_progress_bar()
  return before


def main() -> int:
  from absl import logging  # pylint: disable=g-import-not-at-top

  before = _quiet()
  try:
    return _main()
  finally:
    logging.set_verbosity(before)  # a caller in the same process (tests) keeps its INFO lines


def _main() -> int:
  start = time.perf_counter()
  print(f'{"check":20s} {"":5s} result', flush=True)
  rows = run_checks(print_row)
  failed = [r.check for r in rows if r.ok is False]
  print(
      f'{len(rows) - len(failed)} of {len(rows)} rows fine, {len(failed)} failed'
      + (f' ({", ".join(failed)})' if failed else '')
      + f'; {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}'
  )
  return 1 if failed else 0
