"""experiments/classification/task.py: config validation, augmentation, loss and metrics."""

import jax
import numpy as np
import pytest

from experiments.classification import task as task_lib
from experiments.core.task import ConfigError


@pytest.mark.parametrize(
    'field,value,named',
    [
        ('model.patch_size', 3, 'model.patch_size'),
        ('model.num_heads', 5, 'model.num_heads'),
        ('model.pooling', 'max', 'model.pooling'),
        ('model.positional', 'alibi', 'model.positional'),
        ('model.attention.weighting', 'sparse', 'model.attention.weighting'),
        ('data.dataset', 'cifar', 'data.dataset'),
        ('data.validation_size', 0, 'data.validation_size'),
        ('data.max_shift', 8, 'data.max_shift'),
        ('batch_size', 5000, 'batch_size'),
    ],
)
def test_validate_config_names_the_field(tiny_digits_config, field, value, named):
  config = tiny_digits_config({field: value})
  with pytest.raises(ConfigError) as e:
    task_lib.ClassificationTask.validate_config(config)
  assert e.value.field == named
  assert str(e.value).startswith(f'config.{named}:')
  assert repr(value) in str(e.value)  # and the offending value


def test_conv_stem_takes_a_patch_size_that_does_not_divide_the_image(tiny_digits_config):
  """8x8 digits: patch 8 divides, patch 16 does not but the padded conv stem makes one token;
  the linear stem refuses patch 16, naming the field."""
  config = tiny_digits_config({'model.stem': 'conv', 'model.patch_size': 16})
  task_lib.ClassificationTask.validate_config(config)
  assert task_lib.build_model_config(config).patch_grid == (1, 1)
  config = tiny_digits_config({'model.stem': 'linear', 'model.patch_size': 16})
  with pytest.raises(ConfigError, match=r'patch_size=16 does not divide image_size=\(8, 8\)'):
    task_lib.ClassificationTask.validate_config(config)


def test_mnist_fast_variant_has_a_4x4_token_grid(load_config):
  fast = load_config('mnist', 'fast')
  task_lib.ClassificationTask.validate_config(fast)
  assert task_lib.build_model_config(fast).num_tokens == 16  # [CLS]-free mean pooling
  assert task_lib.build_model_config(load_config('mnist')).num_tokens == 49
  with pytest.raises(ValueError, match="unknown variant 'fats'"):
    load_config('mnist', 'fats')


def test_model_config_takes_image_shape_from_the_dataset(load_config):
  mnist = task_lib.build_model_config(load_config('mnist'))
  assert (mnist.image_size, mnist.channels, mnist.num_classes) == ((28, 28), 1, 10)
  digits = task_lib.build_model_config(load_config('digits'))
  assert digits.image_size == (8, 8)
  config = load_config('digits')
  config.model.image_size = (8, 8)
  with pytest.raises(ConfigError, match='model.image_size: is derived'):
    task_lib.ClassificationTask.validate_config(config)


def test_random_shift_matches_a_loop():
  rng = np.random.default_rng(0)
  images = rng.random((5, 6, 7, 2)).astype(np.float32)
  out = task_lib.random_shift(
      {'image': images, 'label': np.arange(5)}, np.random.default_rng(3), max_shift=2
  )
  dy, dx = np.random.default_rng(3).integers(0, 5, size=(2, 5))
  for i in range(5):
    expected = np.zeros_like(images[i])
    for y in range(6):
      for x in range(7):
        sy, sx = y + dy[i] - 2, x + dx[i] - 2  # source pixel
        if 0 <= sy < 6 and 0 <= sx < 7:
          expected[y, x] = images[i, sy, sx]
    np.testing.assert_array_equal(out['image'][i], expected)
  np.testing.assert_array_equal(out['label'], np.arange(5))


def test_loss_and_metrics_match_numpy(tiny_digits_config):
  task = task_lib.ClassificationTask(tiny_digits_config(label_smoothing=0.2))
  model = task.build_model()
  params = model.init(jax.random.PRNGKey(0), *task.dummy_inputs())['params']
  rng = np.random.default_rng(1)
  batch = {
      'image': rng.random((6, 8, 8, 1)).astype(np.float32),
      'label': np.array([0, 1, 2, 3, 4, 5], np.int32),
      'weight': np.array([1, 1, 1, 1, 0, 0], np.float32),
  }  # two padding rows
  logits = np.asarray(model.apply({'params': params}, batch['image']), np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  nll = np.array([-log_p[i, y] for i, y in enumerate(batch['label'])])
  smooth = np.array(
      [-(0.8 * log_p[i, y] + 0.2 * log_p[i].mean()) for i, y in enumerate(batch['label'])]
  )

  loss, metrics = task.loss_and_metrics(model, params, batch, rng=None, train=False)
  assert float(loss) == pytest.approx(nll[:4].mean(), rel=1e-5)
  assert float(metrics['loss'][0]) == pytest.approx(nll[:4].sum(), rel=1e-5)
  assert float(metrics['loss'][1]) == 4
  correct = (logits.argmax(-1) == batch['label'])[:4].sum()
  assert float(metrics['accuracy'][0]) == correct
  no_dropout = tiny_digits_config({'model.dropout_rate': 0.0}, label_smoothing=0.2)
  task = task_lib.ClassificationTask(no_dropout)
  loss, _ = task.loss_and_metrics(
      task.build_model(), params, batch, rng=jax.random.PRNGKey(0), train=True
  )
  assert float(loss) == pytest.approx(smooth[:4].mean(), rel=1e-5)


def test_eval_batches_and_unknown_split(tiny_digits_config):
  task = task_lib.ClassificationTask(tiny_digits_config())
  sizes = [len(b['label']) for b in task.eval_batches('test')]
  assert sizes == [200, 160]
  with pytest.raises(ValueError, match="unknown split 'train'.*validation"):
    task.eval_batches('train')
