"""Helpers of the tests of the Flax modules (multihead, blocks, models, rnn)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def rand(seed: int, *shape: int) -> np.ndarray:
  """Standard normal float32 values of `shape`."""
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def decode_stepwise(module, params, cache, inputs, *args, **kwargs) -> tuple[np.ndarray, dict]:
  """Feeds `inputs` [b, t, ...] to `module.apply` one position per call, with decode=True, the
  'cache' collection (from `cache`) and the further arguments (e.g. memory and masks, or
  `method=model.decode`); returns the outputs concatenated over positions and the final cache."""
  steps = []
  for t in range(inputs.shape[1]):
    step, mutated = module.apply(
        {"params": params, "cache": cache},
        inputs[:, t : t + 1],
        *args,
        decode=True,
        mutable=["cache"],
        **kwargs,
    )
    cache = mutated["cache"]
    steps.append(step)
  return np.concatenate(steps, axis=1), cache


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
