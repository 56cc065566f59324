"""Device mesh and shardings for data-parallel training.

The mesh has one named axis per kind of parallelism. Today only 'data' is used:
batches are split along axis 0 over 'data' and parameters are replicated. FSDP or
tensor parallelism would add mesh axes (e.g. ('data', 'fsdp', 'tensor')) and give
parameters PartitionSpecs over them in `param_shardings`; the trainer only ever asks
this module for shardings.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """A ('data',) mesh over `config.mesh.data` devices (-1 = all local devices)."""
  devices = jax.devices()
  n = len(devices) if config.mesh.data == -1 else config.mesh.data
  return jax.make_mesh(
      (n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n]
  )


def data_parallel_size(mesh: Mesh) -> int:
  return mesh.shape[DATA_AXIS]


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Axis 0 split over the data axis, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_shardings(mesh: Mesh, abstract_tree: Any) -> Any:
  """Sharding of every leaf of a parameter/optimizer-state pytree (replicated)."""
  return jax.tree.map(lambda _: replicated(mesh), abstract_tree)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Host batch -> global jax.Arrays split over the data axis."""
  n = data_parallel_size(mesh)
  for key, value in batch.items():
    if value.shape[0] % n:
      raise ValueError(
          f'batch[{key!r}] has {value.shape[0]} rows, not divisible by the '
          f'{n} data-parallel devices'
      )
  return jax.device_put(batch, batch_sharding(mesh))
