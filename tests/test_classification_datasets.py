"""experiments/classification/datasets.py: digits split, TFDS MNIST (mocked, and the real
files through the manual-dir mechanism when $TRANSFORMER_DATA_DIR is set)."""

import gzip
import os

import numpy as np
import pytest

from experiments.core import loop
from experiments.classification import datasets

MNIST_FILES = (
    'train-images-idx3-ubyte.gz',
    'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz',
    't10k-labels-idx1-ubyte.gz',
)


def test_digits_split_is_fixed_disjoint_and_complete():
  a = datasets.load_digits(validation_size=180)
  b = datasets.load_digits(validation_size=180)
  assert [len(a[s]['label']) for s in ('train', 'validation', 'test')] == [1257, 180, 360]
  for split in a:
    np.testing.assert_array_equal(a[split]['image'], b[split]['image'])
  # The three splits partition the whole dataset.
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  everything = sorted(map(tuple, load_digits().images.reshape(-1, 64) / 16.0))
  rows = np.concatenate([a[s]['image'].reshape(-1, 64) for s in a]).astype(np.float64)
  assert sorted(map(tuple, rows)) == everything
  assert a['train']['image'].shape[1:] == (8, 8, 1) and a['train']['image'].max() == 1.0


def test_data_root_precedence(monkeypatch, tiny_digits_config):
  data = tiny_digits_config().data
  monkeypatch.setenv('TRANSFORMER_DATA_DIR', '/env/data')
  assert datasets.data_root(data) == '/env/data'
  data.data_dir = '/config/data'
  assert datasets.data_root(data) == '/config/data'
  monkeypatch.delenv('TRANSFORMER_DATA_DIR')
  data.data_dir = ''
  assert datasets.data_root(data) is None


def test_tiny_training_on_mock_mnist(tmp_path, tiny_digits_config):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  config = tiny_digits_config(
      {
          'data.dataset': 'mnist',
          'data.validation_size': 16,
          'data.max_shift': 2,
          'data.tfds_data_dir': str(tmp_path / 'tfds'),
          'model.patch_size': 7,
      },
      num_train_steps=4,
      batch_size=16,
      eval_batch_size=32,
      eval_every_steps=2,
      checkpoint_every_steps=2,
      log_every_steps=2,
  )
  with tfds.testing.mock_data(num_examples=64):
    result = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert result.step == 4
  assert set(result.final_metrics) == {'test/accuracy', 'test/loss'}
  assert np.isfinite(result.final_metrics['test/loss'])


def test_corrupt_manual_files_fail_the_checksum(tmp_path):
  manual = tmp_path / 'data' / 'mnist'
  manual.mkdir(parents=True)
  for name in MNIST_FILES:
    (manual / name).write_bytes(b'not the real file')
  with pytest.raises(
      RuntimeError, match=f'could not prepare TFDS dataset .mnist. from {manual}.*checksum'
  ):
    datasets.prepare_tfds(
        'mnist', manual_root=str(tmp_path / 'data'), tfds_data_dir=str(tmp_path / 'tfds')
    )


def _idx_labels(path):
  with gzip.open(path) as f:
    raw = f.read()
  assert int.from_bytes(raw[:4], 'big') == 2049
  return np.frombuffer(raw, np.uint8, offset=8)


@pytest.mark.skipif(
    not os.environ.get('TRANSFORMER_DATA_DIR'),
    reason='needs $TRANSFORMER_DATA_DIR/mnist (the official MNIST files)',
)
def test_real_mnist_prepared_from_the_manual_dir(tmp_path):
  root = os.environ['TRANSFORMER_DATA_DIR']
  builder = datasets.prepare_tfds('mnist', manual_root=root, tfds_data_dir=str(tmp_path))
  assert builder.info.splits['train'].num_examples == 60000
  assert builder.info.splits['test'].num_examples == 10000
  images, labels = datasets.tfds_split(builder, 'test')
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
  assert 0.0 == images.min() and images.max() == 1.0
  # Same label multiset as the IDX file read directly.
  reference = _idx_labels(os.path.join(root, 'mnist', 't10k-labels-idx1-ubyte.gz'))
  np.testing.assert_array_equal(
      np.bincount(labels, minlength=10), np.bincount(reference, minlength=10)
  )
