"""Helpers of the tests of the Flax modules (multihead, blocks, models)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def rand(seed: int, *shape: int) -> np.ndarray:
  """Standard normal float32 values of `shape`."""
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def random_variables(module, *args, **kwargs) -> dict:
  """Variables of the right shapes with random parameters (other collections zero), without
  running the initialisers (eager initialisation compiles every random op; tests only need
  some parameters)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  rng = np.random.default_rng(0)
  return {
      col: jax.tree.map(
          lambda s: jnp.asarray(
              rng.normal(size=s.shape) * 0.3 if col == "params" else np.zeros(s.shape), s.dtype
          ),
          tree,
      )
      for col, tree in shapes.items()
  }
