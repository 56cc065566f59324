"""experiments/sharding.py: the same run on 8 simulated CPU devices as on 1."""

import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import configuration, loop, sharding


def test_mesh_and_shardings_single_process():
  config = configuration.base_config()
  mesh = sharding.make_mesh(config)
  assert mesh.axis_names == ('data',) and sharding.data_parallel_size(mesh) == jax.device_count()
  assert sharding.batch_sharding(mesh).spec == P('data')
  assert sharding.replicated(mesh).spec == P()
  batch = sharding.shard_batch({'x': np.zeros((4, 3), np.float32)}, mesh)
  assert batch['x'].sharding == sharding.batch_sharding(mesh)


def test_eight_devices_match_one(run_py, tmp_path, tiny_digits_flags):
  """Data parallel over 8 devices (batch 32 = 8 x 4) vs 1 device: same parameters up to
  float reduction order, with dropout on (its random bits do not depend on sharding).
  SGD, because Adam turns the float noise of exactly-zero gradients (e.g. attention key
  biases) into full-size steps of random sign."""
  flags = tiny_digits_flags(
      {
          'num_train_steps': 20,
          'eval_every_steps': 20,
          'checkpoint_every_steps': 20,
          'optimizer': 'sgd',
          'learning_rate': 0.1,
      }
  )
  eight_flags = (
      os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
  ).strip()
  eight = run_py(
      'train', *flags, '--workdir', str(tmp_path / 'eight'), env={'XLA_FLAGS': eight_flags}
  )
  assert eight.returncode == 0, eight.stderr
  assert "Mesh {'data': 8} over 8 cpu device(s)" in eight.stderr
  one = run_py('train', *flags, '--workdir', str(tmp_path / 'one'))
  assert one.returncode == 0, one.stderr
  assert "Mesh {'data': 1} over 1 cpu device(s)" in one.stderr

  a = loop.restore_for_inference(str(tmp_path / 'one'), 'latest')
  b = loop.restore_for_inference(str(tmp_path / 'eight'), 'latest')
  assert a.step == b.step == 20
  changed = False
  init = a.trainer.init_state()
  for x, y, x0 in zip(
      jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), jax.tree.leaves(init.params)
  ):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    changed |= not np.allclose(np.asarray(x), np.asarray(x0))
  assert changed  # the comparison is not between two untrained models
  hist_a = [h for h in loop.metric_logging.read_history(str(tmp_path / 'one')) if 'train/loss' in h]
  hist_b = [
      h for h in loop.metric_logging.read_history(str(tmp_path / 'eight')) if 'train/loss' in h
  ]
  assert [h['train/loss'] for h in hist_a] == pytest.approx(
      [h['train/loss'] for h in hist_b], rel=1e-4
  )
