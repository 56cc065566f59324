"""Device mesh, shardings, and global batches from process-local rows.

The mesh has three named axes, sized by `config.mesh.{data,fsdp,tensor}` (-1 fills the rest):
  data    pure data parallelism: batch rows split, parameters replicated
  fsdp    batch rows split AND parameters / optimizer state split (fully sharded data parallel)
  tensor  attention heads, FFN hidden units and the vocabulary split (tensor parallelism)
Batches are split over ('data', 'fsdp'); parameter shardings come from the logical-axis rules
of `experiments/parallel/partitioning.py`. The trainer only ever asks this module for shardings.

With several processes (`experiments/parallel/distributed.py`), the mesh spans every device of every
process; each process supplies only the rows of a global batch that its own devices hold
(`local_rows`) and `shard_batch` assembles the global array
(`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from experiments.parallel import partitioning

DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
TENSOR_AXIS = 'tensor'
MESH_AXES = (DATA_AXIS, FSDP_AXIS, TENSOR_AXIS)
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # axis 0 of a batch is split over both


def mesh_shape(mesh_config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) with at most one -1 replaced by what fills `num_devices`.

  Raises ValueError naming the field when the sizes cannot work."""
  sizes = [int(mesh_config.get(name, 1)) for name in MESH_AXES]
  fill = [i for i, s in enumerate(sizes) if s == -1]
  if len(fill) > 1:
    raise ValueError(f'mesh: only one of {MESH_AXES} may be -1, got {dict(zip(MESH_AXES, sizes))}')
  for name, s in zip(MESH_AXES, sizes):
    if s == 0 or s < -1:
      raise ValueError(f'mesh.{name}: must be >= 1 or -1 (fill), got {s}')
  fixed = math.prod(s for s in sizes if s != -1)
  if fill:
    if num_devices % fixed:
      raise ValueError(
          f'mesh.{MESH_AXES[fill[0]]}: -1 cannot fill {num_devices} devices when the other axes '
          f'multiply to {fixed}'
      )
    sizes[fill[0]] = num_devices // fixed
  if math.prod(sizes) > num_devices:
    first = MESH_AXES[next(i for i, s in enumerate(sizes) if s > 1)]
    raise ValueError(
        f'mesh.{first}: mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but '
        f'{num_devices} are available (-1 = all)'
    )
  return tuple(sizes)


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """The ('data', 'fsdp', 'tensor') mesh of `config.mesh` over the global devices.

  A mesh smaller than the device count (single process only) uses the first devices."""
  devices = jax.devices()
  shape = mesh_shape(config.mesh, len(devices))
  n = math.prod(shape)
  if n < len(devices) and jax.process_count() > 1:
    raise ValueError(
        f'mesh {dict(zip(MESH_AXES, shape))} uses {n} of {len(devices)} devices; with several '
        'processes the mesh must use all of them'
    )
  return jax.make_mesh(
      shape,
      MESH_AXES,
      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
      devices=devices[:n],
  )


def data_parallel_size(mesh: Mesh) -> int:
  """How many ways a batch is split (data x fsdp); batch sizes must be multiples of it."""
  return math.prod(mesh.shape.get(a, 1) for a in BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Axis 0 split over ('data', 'fsdp'), the rest replicated (and over 'tensor')."""
  return NamedSharding(mesh, P(tuple(a for a in BATCH_AXES if a in mesh.shape)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_shardings(mesh: Mesh, abstract_tree: Any) -> Any:
  """Sharding of every leaf of a parameter/optimizer-state pytree (partitioning.py rules)."""
  return partitioning.tree_shardings(mesh, abstract_tree)


def local_rows(mesh: Mesh, rows: int) -> slice:
  """The rows of a [rows, ...] global batch that this process's devices hold.

  Contiguous for meshes made by `make_mesh` (processes own consecutive blocks of the batch
  axes); the whole batch when a process's devices span the tensor axis only."""
  index_map = batch_sharding(mesh).addressable_devices_indices_map((rows,))
  starts = [idx[0].start or 0 for idx in index_map.values()]
  stops = [rows if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
  lo, hi = min(starts), max(stops)
  covered = sorted({(a, b) for a, b in zip(starts, stops)})
  if sum(b - a for a, b in covered) != hi - lo:
    raise ValueError(f'this process holds non-contiguous rows {covered} of the batch')
  return slice(lo, hi)


def check_rows(batch: dict[str, np.ndarray], mesh: Mesh) -> None:
  n = data_parallel_size(mesh)
  for key, value in batch.items():
    if value.shape[0] % n:
      raise ValueError(
          f'batch[{key!r}] has {value.shape[0]} rows, not divisible by the '
          f'{n} data-parallel devices'
      )


def local_layout(batch: Any) -> tuple[int | None, int | None]:
  """(global_rows, row_start) of a batch holding one process's rows (e.g.
  experiments.core.grain_source.ProcessLocalBatch), else (None, None): a whole global batch."""
  return getattr(batch, 'global_rows', None), getattr(batch, 'row_start', None)


def shard_batch(
    batch: dict[str, np.ndarray],
    mesh: Mesh,
    global_rows: int | None = None,
    row_start: int | None = None,
) -> dict[str, jax.Array]:
  """Host batch -> global jax.Arrays split over the batch axes.

  `global_rows=None`: `batch` is the whole global batch (every process passes the same one
  and keeps its own rows). Otherwise `batch` holds rows [row_start, row_start + len) of a
  global batch of `global_rows` rows, which must be this process's `local_rows`."""
  if global_rows is None:
    check_rows(batch, mesh)
    if jax.process_count() == 1:
      return jax.device_put(batch, batch_sharding(mesh))
    rows = len(next(iter(batch.values())))
    local = local_rows(mesh, rows)
    batch, global_rows = {k: v[local] for k, v in batch.items()}, rows
  else:
    if global_rows % data_parallel_size(mesh):
      raise ValueError(
          f'a global batch of {global_rows} rows is not divisible by the '
          f'{data_parallel_size(mesh)} data-parallel devices'
      )
    local = local_rows(mesh, global_rows)
    rows = len(next(iter(batch.values())))
    if (row_start or 0, rows) != (local.start, local.stop - local.start):
      raise ValueError(
          f'this process supplied rows [{row_start}, {(row_start or 0) + rows}) of a '
          f'{global_rows}-row batch but its devices hold rows [{local.start}, {local.stop})'
      )
  sharding = batch_sharding(mesh)
  return {
      k: jax.make_array_from_process_local_data(
          sharding, np.asarray(v), (global_rows, *v.shape[1:])
      )
      for k, v in batch.items()
  }


def local_mesh() -> Mesh:
  """A ('data', 'fsdp', 'tensor') = (local devices, 1, 1) mesh of this process's devices only:
  for process-local inference (decoding, plots) in a multi-process run."""
  devices = jax.local_devices()
  return Mesh(
      np.asarray(devices).reshape(len(devices), 1, 1),
      MESH_AXES,
      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
  )
