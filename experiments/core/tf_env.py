"""TensorFlow is needed only to prepare TFDS's own datasets (`run.py prepare`, the optional
`[prepare]` extra), never to train or read: when it is imported, import it quietly and hide every
GPU from it, so JAX keeps the accelerators."""

from __future__ import annotations

import importlib.util
import os


def available() -> bool:
  """Whether TensorFlow is installed (without importing it)."""
  return importlib.util.find_spec('tensorflow') is not None


def import_tensorflow():
  """Returns the `tensorflow` module with GPUs hidden from it (idempotent)."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')  # TF only reads data; silences its banner
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # already initialised: visibility was set earlier
    pass
  return tf
