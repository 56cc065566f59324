"""experiments/core/trainer.py: compiled steps learn, eval is exact, metrics honour padding."""

import jax
import numpy as np
import pytest

from experiments.core import loop
from experiments.classification.task import ClassificationTask
from experiments.core.trainer import Trainer, metric_prefix


@pytest.fixture(scope='module')
def trainer(tiny_digits_config):
  task = ClassificationTask(
      tiny_digits_config(
          {'model.dropout_rate': 0.0},
          schedule='constant',
          warmup_steps=0,
          learning_rate=1e-2,
          label_smoothing=0.0,
      )
  )
  task.setup(None)
  return Trainer(task.config, task)


def test_init_is_deterministic_and_replicated(trainer):
  a, b = trainer.init_state(), trainer.init_state()
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert int(a.step) == 0
  leaf = jax.tree.leaves(a.params)[0]
  assert leaf.sharding.is_fully_replicated


def test_overfits_one_batch(trainer):
  batch = trainer.task.train_source().batch(0)
  state = trainer.init_state()
  losses = []
  for _ in range(100):
    state, metrics = trainer.train_step(state, batch)
    losses.append(float(metrics['train/loss']))
  assert int(state.step) == 100
  assert losses[-1] < 0.1 * losses[0], losses
  assert set(metrics) >= {'train/loss', 'train/accuracy', 'train/grad_norm', 'train/learning_rate'}


def test_average_metrics_matches_numpy_reference(trainer):
  """Eval batches of 200 over 360 test images (one padded batch) vs NumPy on all logits."""
  state = trainer.init_state()
  test = trainer.task.splits['test']
  assert len(test['label']) % trainer.config.eval_batch_size != 0  # padding is exercised
  got = trainer.average_metrics(state.params, trainer.task.eval_batches('test'))
  logits = np.asarray(trainer.apply(state.params, test), np.float64)
  log_probs = logits - logits.max(-1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
  nll = [-log_probs[i, y] for i, y in enumerate(test['label'])]
  assert got['loss'] == pytest.approx(np.mean(nll), rel=1e-5)
  assert got['accuracy'] == pytest.approx(np.mean(logits.argmax(-1) == test['label']), abs=1e-9)


def test_eval_from_checkpoint_equals_in_memory_eval(trained_workdir):
  workdir, result = trained_workdir
  in_memory = result.final_metrics  # evaluated on the live state at the end of training
  step, split, restored = loop.evaluate_checkpoint(workdir, 'latest', 'test')
  assert (step, split) == (result.step, 'test')
  assert restored == in_memory
  assert set(restored) == {'test/loss', 'test/accuracy'}


def test_metric_prefix():
  assert metric_prefix('validation', 'validation') == 'eval'
  assert metric_prefix('test', 'validation') == 'test'
  assert metric_prefix('test_2016', 'validation') == 'test_2016'


def test_bfloat16_compute_keeps_float32_params(tiny_digits_config):
  config = tiny_digits_config(
      {'model.dtype': 'bfloat16', 'model.dropout_rate': 0.0},
      schedule='constant',
      warmup_steps=0,
      learning_rate=1e-2,
  )
  task = ClassificationTask(config)
  trainer = Trainer(config, task)
  state = trainer.init_state()
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype('float32')}
  batch = task.train_source().batch(0)
  losses = []
  for _ in range(30):
    state, metrics = trainer.train_step(state, batch)
    losses.append(float(metrics['train/loss']))
  assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {np.dtype('float32')}


def test_microbatches_give_the_same_steps_as_the_whole_batch(tiny_digits_config):
  """Gradient summed over 2 or 4 slices (lax.scan) == whole-batch gradient, step by step.

  SGD: the update is the gradient itself (Adam's first steps, ~g/|g|, would magnify rounding
  differences in near-zero gradients into sign flips)."""
  runs = {}
  for m in (1, 2, 4):
    config = tiny_digits_config(
        {'model.dropout_rate': 0.0},
        microbatches=m,
        batch_size=32,
        optimizer='sgd',
        schedule='constant',
        warmup_steps=0,
        learning_rate=1e-2,
    )
    task = ClassificationTask(config)
    task.setup(None)
    trainer = Trainer(config, task)
    source = task.train_source()
    state = trainer.init_state()
    history = []
    for step in range(3):
      state, metrics = trainer.train_step(state, source.batch(step))
      history.append({k: float(v) for k, v in metrics.items()})
    runs[m] = (jax.device_get(state.params), history)
  for m in (2, 4):
    for a, b in zip(jax.tree.leaves(runs[1][0]), jax.tree.leaves(runs[m][0])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for h1, hm in zip(runs[1][1], runs[m][1]):
      assert hm.keys() == h1.keys()
      for k in h1:
        assert hm[k] == pytest.approx(h1[k], rel=1e-4, abs=1e-6), (m, k)


def test_microbatches_that_do_not_split_the_batch_are_a_config_error(tiny_digits_config):
  from experiments.core import configuration  # pylint: disable=g-import-not-at-top
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top

  with pytest.raises(ConfigError, match='microbatches'):
    configuration.validate_trainer_config(tiny_digits_config(microbatches=3, batch_size=32), 1)
  with pytest.raises(ConfigError, match='microbatches'):
    configuration.validate_trainer_config(tiny_digits_config(microbatches=0), 1)
