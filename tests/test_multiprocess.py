"""Several processes, one run (experiments/parallel/distributed.py): 2 processes x 4 simulated CPU
devices on localhost (gloo collectives) train like 1 process x 8 devices; SIGTERM to one
process stops both at the same step; kill -9 of one process, then a relaunch of both, resumes
and ends with the parameters of the uninterrupted run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.core import loop
from experiments.parallel import distributed
from tests.conftest import REPO_ROOT, TINY_DIGITS, cli_env

# SGD: Adam turns the float noise of exactly-zero gradients into full-size steps (see
# test_sharding.py), which would hide real differences behind noise.
TINY = {**TINY_DIGITS, 'optimizer': 'sgd', 'learning_rate': 0.1}
FLAGS = [
    '--config',
    os.path.join(REPO_ROOT, 'configs', 'digits.py'),
    *[f'--config.{k}={v}' for k, v in TINY.items()],
]
DATA = os.environ.get('TRANSFORMER_DATA_DIR', '')
# A short Multi30k run (real data): tiny model, 10 steps, greedy test decoding.
MULTI30K = {
    'num_train_steps': 10,
    'eval_every_steps': 10,
    'checkpoint_every_steps': 10,
    'log_every_steps': 5,
    'optimizer': 'sgd',
    'learning_rate': 0.1,
    'batch_size': 128,
    'data.vocab_size': 1000,
    'data.tokens_per_batch': 1024,
    'data.length_multiple': 16,  # few batch shapes: few compilations
    'final_test_splits': 'test_2016',  # the one compared below
    'model.d_model': 32,
    'model.num_heads': 2,
    'model.num_encoder_layers': 1,
    'model.num_decoder_layers': 1,
    'model.d_ff': 64,
    'decoding.beam_size': 1,
    'decoding.max_extra_len': 5,
}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def xla_env(devices: int) -> dict[str, str]:
  flags = os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}'
  return cli_env(XLA_FLAGS=flags.strip())


def launch(
    workdir: str, logs: str, tag: str, processes: int = 2, flags: list[str] | None = None
) -> list[subprocess.Popen]:
  """The documented by-hand command, once per process (docs/multihost.md)."""
  port = free_port()
  procs = []
  for i in range(processes):
    log = open(os.path.join(logs, f'{tag}-{i}.log'), 'w')  # pylint: disable=consider-using-with
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(REPO_ROOT, 'run.py'),
                'train',
                *(FLAGS if flags is None else flags),
                '--workdir',
                workdir,
                f'--coordinator_address=localhost:{port}',
                f'--num_processes={processes}',
                f'--process_id={i}',
            ],
            cwd=REPO_ROOT,
            env={**xla_env(4), **({} if flags is None else {'TRANSFORMER_DATA_DIR': DATA})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
  return procs


def wait_all(procs: list[subprocess.Popen], timeout: float = 900) -> list[int]:
  deadline = time.monotonic() + timeout
  return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]


def read(logs: str, tag: str, i: int) -> str:
  with open(os.path.join(logs, f'{tag}-{i}.log')) as f:
    return f.read()


def params_of(workdir: str):
  restored = loop.restore_for_inference(workdir, 'latest')
  return restored.step, [np.asarray(x) for x in jax.tree.leaves(restored.state.params)]


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
  """An uninterrupted 2 x 4-device run: (workdir, logs dir)."""
  root = tmp_path_factory.mktemp('two')
  workdir, logs = str(root / 'run'), str(root)
  procs = launch(workdir, logs, 'full')
  codes = wait_all(procs)
  assert codes == [0, 0], read(logs, 'full', 0)[-3000:] + read(logs, 'full', 1)[-3000:]
  return workdir, logs


def test_settings_from_flags_and_environment(monkeypatch):
  for name in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID', 'SLURM_JOB_ID'):
    monkeypatch.delenv(name, raising=False)
  assert distributed.settings() is None  # a plain single-process run
  assert distributed.settings('h:1', 2, 1) == {
      'coordinator_address': 'h:1',
      'num_processes': 2,
      'process_id': 1,
  }
  assert distributed.settings('h:1', 1, 0) is None  # one process: nothing to connect
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', 'h:2')
  monkeypatch.setenv('JAX_NUM_PROCESSES', '4')
  monkeypatch.setenv('JAX_PROCESS_ID', '3')
  assert distributed.settings()['process_id'] == 3
  assert distributed.settings(mode='off') is None
  with pytest.raises(distributed.DistributedError, match=r'process_id must be in \[0, 4\)'):
    distributed.settings(process_id=4)
  monkeypatch.delenv('JAX_PROCESS_ID')
  with pytest.raises(distributed.DistributedError, match='--process_id missing'):
    distributed.settings()
  env = {'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '2'}
  assert distributed.detected_cluster(env) == 'slurm'
  assert distributed.detected_cluster({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '1'}) is None
  assert distributed.detected_cluster({'OMPI_COMM_WORLD_SIZE': '8'}) == 'openmpi'
  assert distributed.detected_cluster({'TPU_WORKER_HOSTNAMES': 'a,b'}) == 'cloud_tpu'


def test_incomplete_flags_exit_2(run_py, tmp_path):
  out = run_py('train', *FLAGS, '--workdir', str(tmp_path / 'w'), '--num_processes=2')
  assert out.returncode == 2
  assert '--coordinator_address, --process_id missing' in out.stderr
  assert 'Traceback' not in out.stderr


def test_two_processes_match_one_process_of_eight_devices(run_py, tmp_path, two_process_run):
  """Same mesh (data=8) either way; parameters agree to rtol 1e-4 / atol 1e-6 (the order
  of the cross-process float reduction differs); only process 0 writes metrics/plots."""
  workdir, logs = two_process_run
  assert "Mesh {'data': 8, 'fsdp': 1, 'tensor': 1} over 8 cpu device(s)" in read(logs, 'full', 0)
  assert 'Finished training at step 30.' in read(logs, 'full', 0)
  assert 'Mesh' not in read(logs, 'full', 1)  # process 1 logs warnings only
  one = run_py('train', *FLAGS, '--workdir', str(tmp_path / 'one'), env=xla_env(8))
  assert one.returncode == 0, one.stderr[-3000:]
  step_a, a = params_of(str(tmp_path / 'one'))
  step_b, b = params_of(workdir)
  assert step_a == step_b == 30
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  history = loop.metric_logging.read_history(workdir)
  assert [h['step'] for h in history if 'train/loss' in h] == [10, 20, 30]  # no duplicates
  assert os.path.exists(os.path.join(workdir, 'plots', 'learning_curves.png'))


def test_sigterm_then_kill_9_then_resume(tmp_path, two_process_run):
  """SIGTERM to process 1 only: both save at one step and exit 143. Relaunch; kill -9
  process 1 after the next checkpoint (process 0 is then killed too: its collectives
  would wait for a peer that is gone). Relaunch both: the run finishes with parameters
  identical (exactly) to the uninterrupted run's."""
  workdir, logs = str(tmp_path / 'run'), str(tmp_path)
  ckpts = os.path.join(workdir, 'checkpoints')

  def wait_for_checkpoint(step: int, procs) -> None:
    while not os.path.isdir(os.path.join(ckpts, str(step))):
      assert all(p.poll() is None for p in procs), read(logs, 'a', 0)[-3000:]
      time.sleep(0.1)

  procs = launch(workdir, logs, 'a')
  wait_for_checkpoint(10, procs)
  procs[1].send_signal(signal.SIGTERM)
  assert wait_all(procs) == [128 + signal.SIGTERM] * 2, read(logs, 'a', 0)[-3000:]
  stopped = sorted(int(s) for s in os.listdir(ckpts) if s.isdigit())[-1]
  assert 10 <= stopped < 30
  assert f'Stopped at step {stopped}' in read(logs, 'a', 0)

  procs = launch(workdir, logs, 'b')
  wait_for_checkpoint(20 if stopped < 20 else 30, procs)
  procs[1].kill()
  procs[1].wait()
  procs[0].kill()
  procs[0].wait()

  procs = launch(workdir, logs, 'c')
  assert wait_all(procs) == [0, 0], read(logs, 'c', 0)[-3000:] + read(logs, 'c', 1)[-3000:]
  assert 'Resuming from step' in read(logs, 'c', 0)
  step, resumed = params_of(workdir)
  _, reference = params_of(two_process_run[0])
  assert step == 30
  for x, y in zip(resumed, reference):
    np.testing.assert_array_equal(x, y)


@pytest.mark.skipif(not DATA, reason='needs $TRANSFORMER_DATA_DIR with multi30k/')
def test_two_process_multi30k_matches_one_process(run_py, tmp_path):
  """configs/translation_multi30k.py, short: 2 processes x 4 devices (Grain batches, each
  process its rows) end with the parameters (rtol 1e-4, atol 1e-6) and test BLEU of 1 process
  x 8 devices. TFDS prepares into a fresh directory: once, under the preparation lock."""
  flags = [
      '--config',
      os.path.join(REPO_ROOT, 'configs', 'translation_multi30k.py'),
      f'--config.data.tfds_data_dir={tmp_path / "tfds"}',
      *[f'--config.{k}={v}' for k, v in MULTI30K.items()],
  ]
  procs = launch(str(tmp_path / 'two'), str(tmp_path), 'mt', flags=flags)
  codes = wait_all(procs, timeout=1800)
  assert codes == [0, 0], (
      read(str(tmp_path), 'mt', 0)[-3000:] + read(str(tmp_path), 'mt', 1)[-3000:]
  )
  one = run_py(
      'train',
      *flags,
      '--workdir',
      str(tmp_path / 'one'),
      env={**xla_env(8), 'TRANSFORMER_DATA_DIR': DATA},
      timeout=1800,
  )
  assert one.returncode == 0, one.stderr[-3000:]
  step_a, a = params_of(str(tmp_path / 'one'))
  step_b, b = params_of(str(tmp_path / 'two'))
  assert step_a == step_b == 10
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)

  def test_metrics(workdir):
    history = loop.metric_logging.read_history(workdir)
    return {k: v for h in history for k, v in h.items() if k.startswith('test_2016/')}

  ma, mb = test_metrics(str(tmp_path / 'one')), test_metrics(str(tmp_path / 'two'))
  assert ma['test_2016/bleu'] == pytest.approx(mb['test_2016/bleu'], abs=1e-6)
  assert ma['test_2016/loss'] == pytest.approx(mb['test_2016/loss'], rel=1e-5)
