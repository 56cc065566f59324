"""experiments/sweep/launcher.py: where --workers N processes run, the signals it passes on;
storage URL masking."""

import os
import signal
import threading
import time

import pytest

from experiments.sweep import launcher, storage


@pytest.mark.parametrize(
    'workers, cpus, gpus, expected',
    [
        (2, [0, 1], [], [({}, [0]), ({}, [1])]),
        (2, [0, 1, 2, 3, 4], [], [({}, [0, 1]), ({}, [2, 3, 4])]),
        (3, [0, 1], [], [({}, [0]), ({}, [1]), ({}, [0])]),
        (
            2,
            [0, 1, 2, 3],
            ['0', '1'],
            [({'CUDA_VISIBLE_DEVICES': '0'}, [0, 1]), ({'CUDA_VISIBLE_DEVICES': '1'}, [2, 3])],
        ),
        (
            2,
            [0, 1],
            ['3'],
            [
                ({'CUDA_VISIBLE_DEVICES': '3', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}, [0]),
                ({'CUDA_VISIBLE_DEVICES': '3', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}, [1]),
            ],
        ),
    ],
)
def test_one_device_share_per_worker(workers, cpus, gpus, expected):
  got = [launcher.placement(i, workers, cpus, gpus) for i in range(workers)]
  assert [(p['env'], p['cpus']) for p in got] == expected


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,5')
  assert launcher.visible_gpus() == ['2', '5']
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
  assert launcher.visible_gpus() == []


def test_passwords_are_masked():
  url = 'postgresql://sweeper:p%40ss@db:5432/sweeps'
  assert storage.mask(url) == 'postgresql://sweeper:***@db:5432/sweeps'
  assert storage.mask('postgresql://sweeper@db/sweeps') == 'postgresql://sweeper@db/sweeps'
  message = f'could not connect to {url} (password p%40ss rejected)'
  assert 'p%40ss' not in storage.scrub(message, url)


def _wait_for_usr1(ready_dir: str, name: str) -> int:
  """A stand-in worker (spawned: imported by name): says it is ready, then exits 0 once SIGUSR1
  came (writing `got <name>`), 1 if none came within a minute."""
  got = threading.Event()
  signal.signal(signal.SIGUSR1, lambda *_: got.set())
  open(os.path.join(ready_dir, f'ready {name}'), 'w').close()
  if not got.wait(60):
    return 1
  open(os.path.join(ready_dir, f'got {name}'), 'w').close()
  return 0


def test_sigusr1_of_the_launcher_reaches_every_worker(tmp_path):
  """Without the launcher passing it on, its default action would end the launcher and the
  workers would never get it (they would exit 1 after a minute)."""

  def signal_when_ready():
    deadline = time.time() + 120
    while len([f for f in os.listdir(tmp_path) if f.startswith('ready')]) < 2:
      assert time.time() < deadline
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGUSR1)

  sender = threading.Thread(target=signal_when_ready, daemon=True)
  sender.start()
  assert launcher.launch(2, {'ready_dir': str(tmp_path)}, _wait_for_usr1) == 0
  assert sorted(f for f in os.listdir(tmp_path) if f.startswith('got')) == [
      'got worker 0',
      'got worker 1',
  ]
  assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
