"""Helper of tests/test_sharding.py, run in a subprocess with 8 simulated CPU devices.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/mesh_equivalence.py OUT_DIR

Trains the tiny digits model for a few steps under each mesh (data, fsdp, tensor) in MESHES
from the same initial state and batches, saves every run's final parameters as .npz, prints
one JSON line per mesh (loss per step, per-device parameter+optimizer bytes, shardings of a
few leaves), then checks that a checkpoint written under one mesh restores under another.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.core import checkpointing  # noqa: E402
from experiments.parallel import partitioning  # noqa: E402
from experiments.classification.task import ClassificationTask  # noqa: E402
from experiments.core.trainer import Trainer  # noqa: E402
from tests.conftest import TINY_DIGITS, _load_config, _override  # noqa: E402

MESHES = ((8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 1, 8))
SCANNED_MESHES = ((8, 1, 1), (2, 2, 2))  # the same with model.scan_layers (leading layer axis)
STEPS = 6


def tiny_config(mesh: tuple[int, int, int], scan: bool = False):
  config = _override(
      _load_config('digits'),
      {
          **TINY_DIGITS,
          'model.d_model': 32,
          'model.num_heads': 4,
          'model.d_ff': 64,
          'optimizer': 'sgd',
          'learning_rate': 0.1,
          'mesh.data': mesh[0],
          'mesh.fsdp': mesh[1],
          'mesh.tensor': mesh[2],
          'model.scan_layers': scan,
          'model.num_layers': 2,
      },
  )
  return config


def flat(tree) -> dict[str, np.ndarray]:
  return {
      partitioning.path_string(p): np.asarray(x)
      for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def main(out_dir: str) -> None:
  trainers = {}
  for mesh, scan in [(m, False) for m in MESHES] + [(m, True) for m in SCANNED_MESHES]:
    config = tiny_config(mesh, scan)
    task = ClassificationTask(config)
    trainer = Trainer(config, task)
    source = task.train_source()
    state = trainer.init_state()
    losses = []
    for step in range(STEPS):
      state, metrics = trainer.train_step(state, source.batch(step))
      losses.append(float(metrics['train/loss']))
    name = 'x'.join(map(str, mesh)) + ('-scan' if scan else '')
    np.savez(os.path.join(out_dir, f'{name}.npz'), **flat(state.params))
    specs = {
        k: str(s.spec)
        for k, s in flat_shardings(trainer.state_sharding).items()
        if k.endswith(('query/kernel', 'ffn/wi/kernel', 'ffn/wo/kernel'))
        and ('layer_0' in k or '/layers/' in k)
        and (k.startswith('params/') or '/mu/' in k or k.startswith('opt_state'))
    }
    print(
        json.dumps(
            {
                'mesh': mesh,
                'scan': scan,
                'losses': losses,
                'param_opt_bytes_per_device': partitioning.per_device_bytes(
                    trainer.abstract_state, trainer.state_sharding
                ),
                'specs': specs,
            }
        ),
        flush=True,
    )
    if not scan:
      trainers[mesh] = (trainer, state)

  # A checkpoint written under (2, 2, 2) restores under (8, 1, 1) and (1, 1, 8).
  writer, state = trainers[(2, 2, 2)]
  ckpt_dir = os.path.join(out_dir, 'ckpt')
  ckpt = checkpointing.Checkpointer(ckpt_dir, keep=1)
  ckpt.save(STEPS, state, {'step': STEPS})
  ckpt.close()
  reader = checkpointing.Checkpointer(ckpt_dir, read_only=True)
  for mesh in ((8, 1, 1), (1, 1, 8)):
    trainer, _ = trainers[mesh]
    step, restored, _ = reader.restore('latest', trainer.abstract_state)
    same = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params))
    )
    placed = all(
        a.sharding == s
        for a, s in zip(jax.tree.leaves(restored), jax.tree.leaves(trainer.state_sharding))
    )
    print(json.dumps({'restore_mesh': mesh, 'step': step, 'equal': same, 'placed': placed}))
  reader.close()


def flat_shardings(tree) -> dict:
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding)
  )[0]
  return {partitioning.path_string(p): s for p, s in leaves}


if __name__ == '__main__':
  main(sys.argv[1])
