"""experiments/parallel/sharding.py + partitioning.py: meshes (data, fsdp, tensor) on 8 simulated CPU
devices give the same training as 1 device; rules; per-device bytes; cross-mesh restore."""

import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments.core import configuration, loop
from experiments.parallel import partitioning, sharding

from tests.conftest import REPO_ROOT, cli_env


def test_mesh_and_shardings_single_process():
  config = configuration.base_config()
  mesh = sharding.make_mesh(config)
  assert mesh.axis_names == ('data', 'fsdp', 'tensor')
  assert sharding.data_parallel_size(mesh) == jax.device_count()
  assert sharding.batch_sharding(mesh).spec == P(('data', 'fsdp'))
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
  assert "Mesh {'data': 8, 'fsdp': 1, 'tensor': 1} over 8 cpu device(s)" in eight.stderr
  one = run_py('train', *flags, '--workdir', str(tmp_path / 'one'))
  assert one.returncode == 0, one.stderr
  assert "Mesh {'data': 1, 'fsdp': 1, 'tensor': 1} over 1 cpu device(s)" in one.stderr

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


@pytest.mark.parametrize(
    'mesh,devices,expected',
    [
        ({'data': -1, 'fsdp': 1, 'tensor': 1}, 8, (8, 1, 1)),
        ({'data': 2, 'fsdp': -1, 'tensor': 2}, 8, (2, 2, 2)),
        ({'data': 1, 'fsdp': 1, 'tensor': -1}, 8, (1, 1, 8)),
        ({'data': 2, 'fsdp': 1, 'tensor': 1}, 8, (2, 1, 1)),  # a subset (single process)
    ],
)
def test_mesh_shape_fills_minus_one(mesh, devices, expected):
  assert sharding.mesh_shape(ml_collections.ConfigDict(mesh), devices) == expected


@pytest.mark.parametrize(
    'mesh,match',
    [
        ({'data': -1, 'fsdp': -1, 'tensor': 1}, 'only one'),
        ({'data': -1, 'fsdp': 3, 'tensor': 1}, 'mesh.data: -1 cannot fill 8'),
        ({'data': 4, 'fsdp': 4, 'tensor': 1}, 'needs 16 devices but 8'),
        ({'data': 1, 'fsdp': 0, 'tensor': 1}, 'mesh.fsdp: must be >= 1'),
    ],
)
def test_bad_mesh_is_a_config_error(tiny_digits_config, mesh, match):
  config = tiny_digits_config()
  config.mesh.update(mesh)
  with pytest.raises(configuration.ConfigError, match=match):
    configuration.validate(config, num_devices=8)


def test_batch_must_divide_data_times_fsdp(tiny_digits_config):
  config = tiny_digits_config(batch_size=12)
  config.mesh.update({'data': 2, 'fsdp': 4, 'tensor': 1})
  with pytest.raises(configuration.ConfigError, match='batch_size: 12 is not divisible by the 8'):
    configuration.validate(config, num_devices=8)


def test_partitioning_rules_by_path_and_rank():
  """Hand-written expectations for the module paths of transformer/ (plain and scanned)."""
  axes = partitioning.logical_axes
  assert axes('params/encoder/layer_0/self_attention/query/kernel', 3) == ('embed', 'heads', 'kv')
  assert axes('params/decoder/layers/cross_attention/out/kernel', 4) == (
      'layers',
      'heads',
      'kv',
      'embed',
  )
  assert axes('opt_state/0/mu/encoder/layers/ffn/wi/kernel', 3) == ('layers', 'embed', 'mlp')
  assert axes('params/embed/embedding', 2) == ('vocab', 'embed')
  assert axes('params/pos_embedding/embedding', 2) == ('length', 'embed')
  assert axes('params/encoder/layer_0/self_attention/additive_score', 2) is None  # no rule
  assert axes('params/encoder/layer_0/ffn/wi/kernel', 4) is None  # rank fits no layout


def test_mesh_spec_drops_axes_that_do_not_divide():
  mesh = jax.sharding.AbstractMesh((1, 1, 1), ('data', 'fsdp', 'tensor'))
  assert partitioning.mesh_spec(('embed', 'mlp'), (16, 32), mesh) == P(None, None)  # size-1 axes
  mesh = jax.sharding.AbstractMesh((1, 2, 4), ('data', 'fsdp', 'tensor'))
  assert partitioning.mesh_spec(('embed', 'mlp'), (16, 32), mesh) == P('fsdp', 'tensor')
  assert partitioning.mesh_spec(('embed', 'heads', 'kv'), (16, 2, 8), mesh) == P('fsdp', None, None)
  assert partitioning.mesh_spec(('layers', 'vocab', 'embed'), (3, 6, 15), mesh) == P(
      None, None, None
  )


def test_meshes_agree_on_eight_devices(tmp_path):
  """(data, fsdp, tensor) = (8,1,1), (2,4,1), (2,2,2), (1,1,8): the same losses (rel 1e-5) and
  parameters (rtol 1e-4, atol 1e-6: only float reduction order differs) after 6 SGD steps
  (also with scanned layers under (8,1,1) and (2,2,2));
  per-device parameter+optimizer bytes shrink with fsdp/tensor; a checkpoint written under
  (2,2,2) restores bit-identically under (8,1,1) and (1,1,8), placed by the new shardings."""
  env = cli_env(
      XLA_FLAGS=(
          os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
      ).strip()
  )
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, 'tests', 'mesh_equivalence.py'), str(tmp_path)],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=1200,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
  runs = {tuple(r['mesh']): r for r in rows if 'mesh' in r and not r['scan']}
  scanned = {tuple(r['mesh']): r for r in rows if 'mesh' in r and r['scan']}
  assert set(runs) == {(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 1, 8)}
  ref = np.load(tmp_path / '8x1x1.npz')
  for mesh, run in runs.items():
    print(mesh, 'parameter+optimizer bytes per device:', run['param_opt_bytes_per_device'])
    assert run['losses'] == pytest.approx(runs[(8, 1, 1)]['losses'], rel=1e-5)
    other = np.load(tmp_path / ('x'.join(map(str, mesh)) + '.npz'))
    assert sorted(other.files) == sorted(ref.files)
    for name in ref.files:
      np.testing.assert_allclose(other[name], ref[name], rtol=1e-4, atol=1e-6, err_msg=name)
  full = runs[(8, 1, 1)]['param_opt_bytes_per_device']
  assert runs[(2, 4, 1)]['param_opt_bytes_per_device'] < full / 3  # most bytes split 4 ways
  assert runs[(2, 2, 2)]['param_opt_bytes_per_device'] < full / 3  # split 2 x 2 ways
  assert runs[(1, 1, 8)]['param_opt_bytes_per_device'] < full * 0.7  # FFN + vocab split 8 ways
  spec = runs[(2, 2, 2)]['specs']
  assert spec['params/encoder/layer_0/ffn/wi/kernel'] == "P('fsdp', 'tensor')"
  assert spec['params/encoder/layer_0/self_attention/query/kernel'] == "P('fsdp', 'tensor', None)"
  # Scanned layers (one stacked leaf per parameter, leading 'layers' axis): same rules.
  assert scanned[(2, 2, 2)]['losses'] == pytest.approx(scanned[(8, 1, 1)]['losses'], rel=1e-5)
  spec = scanned[(2, 2, 2)]['specs']
  assert spec['params/encoder/layers/ffn/wi/kernel'] == "P(None, 'fsdp', 'tensor')"
  a, b = np.load(tmp_path / '8x1x1-scan.npz'), np.load(tmp_path / '2x2x2-scan.npz')
  for name in a.files:
    np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)
  restores = [r for r in rows if 'restore_mesh' in r]
  assert len(restores) == 2 and all(r['equal'] and r['placed'] and r['step'] == 6 for r in restores)
