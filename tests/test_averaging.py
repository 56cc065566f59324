"""experiments/core/averaging.py: the mean of the last N checkpoints, in training and `run.py eval`."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.core import averaging, checkpointing, configuration, loop, metric_logging
from experiments.core.task import ConfigError


def test_mean_params_against_numpy():
  rng = np.random.default_rng(0)
  trees = [
      {'w': rng.normal(size=(3, 4)).astype(np.float32), 'b': {'v': rng.normal(size=(5,))}}
      for _ in range(3)
  ]
  for tree in trees:
    tree['b']['v'] = jnp.asarray(tree['b']['v'], jnp.bfloat16)
  mean = averaging.mean_params(iter(trees))
  for i in range(3):
    for j in range(4):
      expected = (trees[0]['w'][i, j] + trees[1]['w'][i, j] + trees[2]['w'][i, j]) / 3
      np.testing.assert_allclose(float(mean['w'][i, j]), expected, rtol=1e-6)
  assert mean['b']['v'].dtype == jnp.bfloat16  # cast back to the parameter dtype
  v = [np.asarray(t['b']['v'], np.float32) for t in trees]
  np.testing.assert_array_equal(
      np.asarray(mean['b']['v'], np.float32),
      np.asarray(jnp.asarray((v[0] + v[1] + v[2]) / 3, jnp.bfloat16), np.float32),
  )


def test_checkpoints_saved_counts_the_save_steps():
  for total, every_c, every_e in [
      (30, 10, 10),
      (30, 7, 10),
      (100, 25, 40),
      (5, 10, 20),
      (12, 3, 4),
  ]:
    config = configuration.base_config()
    config.num_train_steps, config.checkpoint_every_steps = total, every_c
    config.eval_every_steps = every_e
    expected = 0
    for step in range(1, total + 1):
      expected += step % every_c == 0 or step % every_e == 0 or step == total
    assert averaging.checkpoints_saved(config) == expected, (total, every_c, every_e)


@pytest.mark.parametrize(
    'overrides, message',
    [
        ({'average_last_checkpoints': 3, 'keep_checkpoints': 2}, 'keep_checkpoints=2'),
        ({'average_last_checkpoints': -1}, 'must be in [0'),
        ({'average_last_checkpoints': 2, 'num_train_steps': 9}, 'the 1 checkpoint(s)'),
    ],
)
def test_average_last_checkpoints_is_validated(tiny_digits_config, overrides, message):
  with pytest.raises(ConfigError) as e:
    configuration.validate(tiny_digits_config(overrides), 1)
  assert e.value.field == 'average_last_checkpoints'
  assert message in str(e.value)


def test_averaging_three_known_checkpoints(tiny_digits_config, tmp_path):
  config = tiny_digits_config()
  _, trainer = loop.build_run(config, None)
  state = trainer.init_state()
  rng = np.random.default_rng(1)
  known = {}  # step -> the NumPy parameters written at that step
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), keep=3)
  for step in (10, 20, 30):
    known[step] = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), state.params)
    params = jax.tree.map(jnp.asarray, known[step])
    ckpt.save(step, state.replace(params=params, step=jnp.int32(step)), {})
  restore = lambda s: loop.restore_state(ckpt, s, trainer, config)[1]  # noqa: E731
  for n in (3, 2):
    steps, averaged = averaging.averaged_state(ckpt.all_steps(), n, ckpt.directory, restore)
    assert steps == [10, 20, 30][-n:]
    assert int(averaged.step) == 30  # the latest checkpoint's state around the mean
    known_leaves = [dict(jax.tree_util.tree_flatten_with_path(known[s])[0]) for s in steps]
    for path, leaf in jax.tree_util.tree_flatten_with_path(averaged.params)[0]:
      expected = np.zeros_like(known_leaves[0][path])
      for leaves in known_leaves:  # the same parameter of each written checkpoint
        expected = expected + leaves[path]
      np.testing.assert_allclose(np.asarray(leaf), expected / n, rtol=1e-6, atol=1e-7)
  with pytest.raises(averaging.AveragingError, match=r'holds 3 \(steps \[10, 20, 30\]\)'):
    averaging.averaged_state(ckpt.all_steps(), 4, ckpt.directory, restore)
  ckpt.close()


def test_final_test_evaluation_uses_the_average(tiny_digits_config, tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_digits_config(average_last_checkpoints=2, eval_every_steps=30)
  result = loop.train_and_evaluate(config, workdir)
  step, _, metrics = loop.evaluate_checkpoint(workdir, 'latest', 'test', average_last=2)
  assert step == 30
  assert metrics == {k: v for k, v in result.final_metrics.items() if k.startswith('test/')}
  last = loop.evaluate_checkpoint(workdir, 'latest', 'test')[2]
  assert last['test/loss'] != metrics['test/loss']  # the average is not the last checkpoint
  logged = metric_logging.read_history(workdir)[-2]
  assert logged['checkpoint'] == 'mean of steps [20, 30]'


def test_eval_cli_average_last(run_py, trained_workdir):
  workdir, _ = trained_workdir
  out = run_py('eval', '--workdir', workdir, '--split', 'test', '--average_last', '2')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'mean of the last 2 checkpoints up to step 30' in out.stdout
  assert 'test/accuracy' in out.stdout
  with open(os.path.join(workdir, metric_logging.METRICS_FILE)) as f:
    last = json.loads(f.readlines()[-1])
  assert last['checkpoint'].startswith('mean of steps [') and last['step'] == 30
  many = run_py('eval', '--workdir', workdir, '--average_last', '9')
  assert many.returncode == 1
  assert 'run.py: error: cannot average the last 9 checkpoints' in many.stderr
  assert 'holds' in many.stderr and 'Traceback' not in many.stderr
  both = run_py('eval', '--workdir', workdir, '--average_last', '2', '--checkpoint', 'best')
  assert both.returncode == 2 and 'drop --checkpoint' in both.stderr
