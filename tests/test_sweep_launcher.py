"""experiments/sweep/launcher.py: where --workers N processes run; storage URL masking."""

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
