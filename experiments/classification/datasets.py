"""Image classification data, loaded into memory as NumPy arrays.

  digits          scikit-learn's bundled 8x8 digits (1,797 images, offline, no download)
  mnist           TFDS `mnist`           (28x28x1, 60k train / 10k test)
  fashion_mnist   TFDS `fashion_mnist`   (28x28x1, 60k train / 10k test)

TFDS datasets are prepared once as ArrayRecord files (`run.py prepare`, or on first use) and
read by random access (`as_data_source`) without TensorFlow. Preparing them runs TFDS's official
builder, which needs TensorFlow (`pip install -e '.[prepare]'`) and downloads where there is
network. Offline, it is prepared from the official files placed in `<data root>/<name>/` (e.g.
$TRANSFORMER_DATA_DIR/mnist/train-images-idx3-ubyte.gz, ...) through TFDS's manual-dir mechanism,
which verifies the files' registered checksums. The data root is `config.data.data_dir`, else
$TRANSFORMER_DATA_DIR.

Splits: validation = the last `validation_size` examples of the TFDS train split (used for
best-checkpoint selection); `test` is only used for the final report. Digits has no
official split: a fixed permutation (independent of the run's seed) gives
test = 360, validation = `validation_size`, train = the rest.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np

from experiments.core import tf_env
from experiments.core.data import DATA_DIR_ENV, data_root
from experiments.core.task import RunError

DIGITS_TEST_SIZE = 360

FASHION_CLASSES = (
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  image_size: tuple[int, int]
  channels: int
  class_names: tuple[str, ...]
  num_train: int  # examples in the source's train split (before carving validation)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


DIGIT_NAMES = tuple(str(i) for i in range(10))
DATASETS: dict[str, DatasetInfo] = {
    'digits': DatasetInfo((8, 8), 1, DIGIT_NAMES, 1797 - DIGITS_TEST_SIZE),
    'mnist': DatasetInfo((28, 28), 1, DIGIT_NAMES, 60000),
    'fashion_mnist': DatasetInfo((28, 28), 1, FASHION_CLASSES, 60000),
}

Split = dict[str, np.ndarray]  # {'image': float32 [n, h, w, c] in [0, 1], 'label': int32 [n]}


class DatasetUnavailableError(RunError, RuntimeError):
  """The dataset can be neither loaded, prepared from local files nor downloaded."""


def _carve(images: np.ndarray, labels: np.ndarray, validation_size: int) -> tuple[Split, Split]:
  n = len(labels) - validation_size
  if n <= 0:
    raise ValueError(
        f'validation_size={validation_size} leaves no training examples '
        f'(the train split has {len(labels)})'
    )
  train = {'image': images[:n], 'label': labels[:n]}
  validation = {'image': images[n:], 'label': labels[n:]}
  return train, validation


def load_digits(validation_size: int) -> dict[str, Split]:
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top

  digits = sk_datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(labels))  # fixed split, any seed
  images, labels = images[order], labels[order]
  test = {'image': images[:DIGITS_TEST_SIZE], 'label': labels[:DIGITS_TEST_SIZE]}
  train, validation = _carve(images[DIGITS_TEST_SIZE:], labels[DIGITS_TEST_SIZE:], validation_size)
  return {'train': train, 'validation': validation, 'test': test}


def tfds_builder(name: str, tfds_data_dir: str | None):
  """TFDS's builder of `name`, reading and writing ArrayRecord files (random access through
  `as_data_source`, no TensorFlow at run time)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return tfds.builder(name, data_dir=tfds_data_dir or None, file_format='array_record')
  except ValueError as e:  # prepared earlier in TFDS's default TFRecord format
    if 'File format is already set' not in str(e):
      raise
    where = os.path.join(os.path.expanduser(tfds_data_dir or tfds.core.constants.DATA_DIR), name)
    raise DatasetUnavailableError(
        f'{name} in {where} was prepared as TFRecord files (by an older version), which are '
        'read only through TensorFlow; move that folder away (or set '
        'config.data.tfds_data_dir to another folder) and run `python run.py prepare --config '
        'CONFIG` to prepare it as ArrayRecord'
    ) from None


def prepare_tfds(name: str, *, manual_root: str | None, tfds_data_dir: str | None):
  """The TFDS builder of `name`, prepared once as ArrayRecord files (from
  `<manual_root>/<name>` if present). TFDS's own MNIST builders need TensorFlow to prepare (not
  to read): without it, an unprepared dataset is a one-line error naming `run.py prepare`."""
  builder = tfds_builder(name, tfds_data_dir)
  if builder.is_prepared():
    return builder
  if not tf_env.available():
    raise DatasetUnavailableError(
        f'{name} is not prepared in {builder.data_dir} and TensorFlow, which TFDS needs to '
        f"prepare it, is not installed: run `pip install -e '.[prepare]'` and `python run.py "
        f'prepare --config CONFIG` once (any CPU machine; copy the folder here or set '
        f'config.data.tfds_data_dir)'
    )
  tf_env.import_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  manual_dir = os.path.join(manual_root, name) if manual_root else None
  if manual_dir and not os.path.isdir(manual_dir):
    manual_dir = None
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
  except Exception as e:  # pylint: disable=broad-except
    where = (
        f'from {manual_dir}'
        if manual_dir
        else f'(no local copy: {os.path.join(manual_root, name) if manual_root else "$" + DATA_DIR_ENV + " unset"})'
    )
    raise DatasetUnavailableError(
        f'could not prepare TFDS dataset {name!r} {where}: {type(e).__name__}: {e}\n'
        f'Offline, put the official files of {name} in <data root>/{name}/ and set '
        f'${DATA_DIR_ENV}=<data root> (or config.data.data_dir).'
    ) from e
  return builder


def tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
  """All of `split` as arrays, read from the ArrayRecord files by random access."""
  source = builder.as_data_source(split=split)
  rows = [source[i] for i in range(len(source))]
  images = np.stack([r['image'] for r in rows])
  labels = np.asarray([r['label'] for r in rows], np.int32)
  return (images.astype(np.float32) / 255.0), labels


def load_tfds(
    name: str, *, validation_size: int, manual_root: str | None, tfds_data_dir: str | None
) -> dict[str, Split]:
  builder = prepare_tfds(name, manual_root=manual_root, tfds_data_dir=tfds_data_dir)
  train_images, train_labels = tfds_split(builder, 'train')
  test_images, test_labels = tfds_split(builder, 'test')
  train, validation = _carve(train_images, train_labels, validation_size)
  return {
      'train': train,
      'validation': validation,
      'test': {'image': test_images, 'label': test_labels},
  }


def prepare(data_config: ml_collections.ConfigDict) -> str:
  """Prepares config.data.dataset once (`run.py prepare`); says where it is."""
  if data_config.dataset == 'digits':
    return 'digits: ships inside scikit-learn, nothing to prepare'
  builder = prepare_tfds(
      data_config.dataset,
      manual_root=data_root(data_config),
      tfds_data_dir=data_config.tfds_data_dir or None,
  )
  return f'{data_config.dataset}: prepared (ArrayRecord) in {builder.data_dir}'


def load(data_config: ml_collections.ConfigDict) -> dict[str, Split]:
  """{'train', 'validation', 'test'} splits of config.data.dataset."""
  if data_config.dataset == 'digits':
    return load_digits(data_config.validation_size)
  return load_tfds(
      data_config.dataset,
      validation_size=data_config.validation_size,
      manual_root=data_root(data_config),
      tfds_data_dir=data_config.tfds_data_dir or None,
  )
