"""On PYTHONPATH, makes this interpreter behave as if TensorFlow were not installed: `import
tensorflow` raises ModuleNotFoundError and `importlib.util.find_spec('tensorflow')` is None (what
TFDS and etils check). tests/conftest.py puts it on the path of every `run.py` subprocess, so the
whole suite proves that training, evaluation, sweeps and inference never import TensorFlow."""

import importlib.machinery

_find_spec = importlib.machinery.PathFinder.find_spec.__func__


def _hide_tensorflow(cls, name, path=None, target=None):
  if name == 'tensorflow' or name.startswith('tensorflow.'):
    return None
  return _find_spec(cls, name, path, target)


importlib.machinery.PathFinder.find_spec = classmethod(_hide_tensorflow)
