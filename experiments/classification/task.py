"""Image classification with the library's EncoderClassifier (patches as tokens).

Config sections read here (see configs/digits.py, configs/mnist.py):
  data.dataset          'digits' | 'mnist' | 'fashion_mnist' (datasets.DATASETS)
  data.data_dir         root holding mnist/, ... ('' = $TRANSFORMER_DATA_DIR)
  data.tfds_data_dir    where TFDS keeps prepared datasets ('' = TFDS default)
  data.validation_size  examples carved from the end of train for validation
  data.max_shift        random translation augmentation in pixels (0 = off)
  model.*               transformer.classifier.ClassifierConfig fields (experiments/core/model_config.py)
                        except image_size, channels and num_classes (taken from the dataset)
  label_smoothing       training loss only; eval loss is plain cross-entropy
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.core import data as data_lib
from experiments.core import model_config as model_config_lib
from experiments.core import registry
from experiments.classification import datasets
from experiments.classification import plots
from experiments.core.task import Batch, ConfigError, EvalContext, Metrics, Task
from transformer.classifier import ClassifierConfig, EncoderClassifier

DERIVED_MODEL_FIELDS = registry.entry('classification').derived


def build_model_config(config: ml_collections.ConfigDict) -> ClassifierConfig:
  """ClassifierConfig from config.model plus the dataset's image size and classes; a bad
  value is a ConfigError naming model.<field>."""
  info = datasets.DATASETS[config.data.dataset]
  return model_config_lib.build(
      'classification',
      config.model,
      image_size=info.image_size,
      channels=info.channels,
      num_classes=info.num_classes,
  )


def random_shift(batch: Batch, rng: np.random.Generator, max_shift: int) -> Batch:
  """Translates each image by up to `max_shift` pixels in x and y (zero fill)."""
  images = batch['image']  # [b, h, w, c]
  b, h, w, _ = images.shape
  s = max_shift
  padded = np.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
  dy, dx = rng.integers(0, 2 * s + 1, size=(2, b))
  rows = dy[:, None] + np.arange(h)  # [b, h]
  cols = dx[:, None] + np.arange(w)  # [b, w]
  shifted = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return {**batch, 'image': shifted}


class ClassificationTask(Task):
  """digits / MNIST / Fashion-MNIST classification; best checkpoint by eval accuracy."""

  validation_split = 'validation'
  test_splits = ('test',)
  best_metric = 'accuracy'
  best_mode = 'max'

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    d = config.data
    if d.dataset not in datasets.DATASETS:
      raise ConfigError(
          'data.dataset',
          f'unknown dataset {d.dataset!r}; ' f'choose one of {sorted(datasets.DATASETS)}',
      )
    info = datasets.DATASETS[d.dataset]
    if not 0 < d.validation_size < info.num_train:
      raise ConfigError(
          'data.validation_size',
          f'must be in (0, {info.num_train}) for ' f'{d.dataset}, got {d.validation_size}',
      )
    if config.batch_size > info.num_train - d.validation_size:
      raise ConfigError(
          'batch_size',
          f'{config.batch_size} is larger than the '
          f'{info.num_train - d.validation_size} training examples',
      )
    if not 0 <= d.max_shift < min(info.image_size):
      raise ConfigError(
          'data.max_shift', f'must be in [0, {min(info.image_size)}), got {d.max_shift}'
      )
    m = config.model
    for name in DERIVED_MODEL_FIELDS:
      if name in m:
        raise ConfigError(f'model.{name}', 'is derived from data.dataset; remove it')
    build_model_config(config)  # ConfigError naming the model field (patch size, heads, ...)

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.info = datasets.DATASETS[config.data.dataset]
    self.model_config = build_model_config(config)
    self._splits: dict[str, dict[str, np.ndarray]] | None = None

  @property
  def splits(self) -> dict[str, dict[str, np.ndarray]]:
    """{'train', 'validation', 'test'} arrays, loaded on first use (classify needs none)."""
    if self._splits is None:
      self._splits = datasets.load(self.config.data)
    return self._splits

  def prepare_data(self) -> list[str]:
    return [datasets.prepare(self.config.data)]

  @property
  def class_names(self) -> tuple[str, ...]:
    return self.info.class_names

  def build_model(self) -> nn.Module:
    return EncoderClassifier(self.model_config)

  def dummy_inputs(self) -> tuple[np.ndarray, ...]:
    h, w = self.info.image_size
    return (np.zeros((1, h, w, self.info.channels), np.float32),)

  def model_inputs(self, batch: Batch) -> tuple[np.ndarray, ...]:
    return (batch['image'],)

  def train_source(self) -> data_lib.ArraySource:
    shift = self.config.data.max_shift
    augment = (lambda batch, rng: random_shift(batch, rng, shift)) if shift else None
    return data_lib.ArraySource(
        self.splits['train'], self.config.batch_size, seed=self.config.seed, augment=augment
    )

  def eval_batches(self, split: str) -> Iterator[Batch]:
    if split not in self.eval_splits:
      raise ValueError(f'unknown split {split!r}; choose one of {list(self.eval_splits)}')
    return data_lib.batched(self.splits[split], self.config.eval_batch_size)

  def loss_and_metrics(
      self, model: nn.Module, params, batch: Batch, *, rng, train: bool
  ) -> tuple[jax.Array, Metrics]:
    logits = model.apply(
        {'params': params}, batch['image'], train=train, rngs={'dropout': rng} if train else None
    )  # [b, classes]
    num_classes = logits.shape[-1]
    labels = batch['label']
    weight = batch['weight']
    targets = jax.nn.one_hot(labels, num_classes)
    if train and self.config.label_smoothing > 0:
      eps = self.config.label_smoothing
      targets = targets * (1.0 - eps) + eps / num_classes
    per_example = optax.softmax_cross_entropy(logits, targets)  # [b]
    count = weight.sum()
    loss_sum = (weight * per_example).sum()
    correct = (weight * (jnp.argmax(logits, -1) == labels)).sum()
    return loss_sum / jnp.maximum(count, 1.0), {
        'loss': (loss_sum, count),
        'accuracy': (correct, count),
    }

  def make_plots(self, ctx: EvalContext, plot_dir: str, history) -> list[str]:
    test = self.splits['test']
    batch = {k: v[:6] for k, v in test.items()}
    logits, state = ctx.apply(batch, mutable=['intermediates'])
    weights = plots.attention_weights(state['intermediates'])
    path = os.path.join(plot_dir, 'cls_attention.png')
    plots.plot_cls_attention(
        batch['image'],
        weights,
        patch_size=self.model_config.patch_size,
        cls_token=self.model_config.pooling == 'cls',
        titles=[
            f'true {self.class_names[t]} / pred {self.class_names[p]}'
            for t, p in zip(batch['label'], np.asarray(logits).argmax(-1))
        ],
        path=path,
    )
    return [path]

  def hints(self, workdir: str) -> list[str]:
    return [
        f'python run.py classify --workdir {workdir} IMAGE.png ...',
        f'python run.py train --config configs/mnist.py --workdir /tmp/mnist '
        '(needs the MNIST files: see README)',
    ]
