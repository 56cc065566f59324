"""TensorFlow is only an input-pipeline / summary-writing dependency: import it quietly
and hide every GPU from it, so JAX keeps the accelerators."""

from __future__ import annotations

import os


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
