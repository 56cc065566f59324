"""One run's attention view: what the ablation report's attention grid draws for it, kept in
the run's dir so that it travels without the checkpoint.

  make(workdir)  restores the run's best checkpoint and computes its view, writes it to
                 workdir/attention_view.npz and returns it; None for tasks without one
  read(workdir)  the written view, or None
  view(workdir)  from the checkpoint when there is one (the file is refreshed), else the file

A view is ('image', (image [h, w], heat [h, w], note)) for classification: the [CLS] / mean
rollout over the patches of the first test image, on its pixel grid; or ('text', (weights
[t, s], source pieces, target pieces)) for translation: cross-attention of the last decoder
layer, mean over heads, on the first test sentence teacher-forced with its reference.

A sweep's record (experiments/sweep/record.py) leaves checkpoints behind; it makes the view of
every seed-0 run first, so that a report written on another machine still has its grid.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

VIEW_FILE = 'attention_view.npz'
TASKS = ('classification', 'translation')  # the tasks with a view


def _classification(restored, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
  """`inputs` caches the first test image per dataset config: runs share it, loaded once."""
  from experiments.classification import plots  # pylint: disable=g-import-not-at-top

  task = restored.task
  key = json.dumps(restored.config.data.to_dict(), sort_keys=True)
  if key not in inputs:
    inputs[key] = {k: v[:1] for k, v in task.splits['test'].items()}
  batch = inputs[key]
  logits, state = restored.trainer.apply(restored.state.params, batch, mutable=['intermediates'])
  cfg = task.model_config
  image = batch['image'][0].mean(axis=-1)  # [h, w]
  heat = plots.cls_patch_attention(
      plots.attention_weights(state['intermediates']), cfg.patch_grid, cfg.pooling == 'cls'
  )[0]
  heat = plots.patch_heat(heat, cfg.patch_size, image.shape)  # [h, w]
  pred = task.class_names[int(np.asarray(logits)[0].argmax())]
  return np.asarray(image), np.asarray(heat), f'pred {pred}'


def _translation(restored) -> tuple[np.ndarray, list[str], list[str]]:
  task = restored.task
  split = task.text(task.test_splits[0])
  tok = task.tokenizer
  src = tok.encode_source([split.sources[0]])[0]
  tgt = tok.encode_target([split.targets[0]])[0]
  translator = task.translator(restored.trainer.model, restored.trainer.mesh)
  weights = translator.cross_attention(restored.state.params, src, tgt)  # [heads, t, s]
  return np.asarray(weights).mean(axis=0), tok.source_pieces(src), tok.target_pieces(tgt)


def _write(workdir: str, kind: str, value: tuple) -> None:
  if kind == 'image':
    image, heat, note = value
    arrays = dict(image=image, heat=heat, note=np.array(note))
  else:
    weights, src, tgt = value
    arrays = dict(weights=weights, source=np.array(src, dtype=str), target=np.array(tgt, dtype=str))
  path = os.path.join(workdir, VIEW_FILE)
  with open(path + '.tmp', 'wb') as f:  # written whole or not at all
    np.savez(f, kind=np.array(kind), **arrays)
  os.replace(path + '.tmp', path)


def read(workdir: str) -> tuple[str, tuple] | None:
  """The view written by make(), or None when the run has none."""
  path = os.path.join(workdir, VIEW_FILE)
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    kind = str(f['kind'])
    if kind == 'image':
      return kind, (f['image'], f['heat'], str(f['note']))
    return kind, (f['weights'], [str(s) for s in f['source']], [str(s) for s in f['target']])


def make(workdir: str, inputs: dict[str, Any] | None = None) -> tuple[str, tuple] | None:
  """The view of the run's best checkpoint, written to its dir; None for other tasks (nothing
  is restored). Raises checkpointing.CheckpointNotFoundError for a run without checkpoints."""
  from experiments.core import configuration  # pylint: disable=g-import-not-at-top
  from experiments.core import loop  # pylint: disable=g-import-not-at-top

  task = configuration.read_config(workdir).task
  if task not in TASKS:
    return None
  restored = loop.restore_for_inference(workdir, 'best')
  if task == 'classification':
    kind, value = 'image', _classification(restored, {} if inputs is None else inputs)
  else:
    kind, value = 'text', _translation(restored)
  _write(workdir, kind, value)
  return kind, value


def view(workdir: str, inputs: dict[str, Any] | None = None) -> tuple[str, tuple] | None:
  """From the checkpoint when the run has one, else the file make() wrote; a run with neither
  raises checkpointing.CheckpointNotFoundError."""
  from experiments.core import checkpointing  # pylint: disable=g-import-not-at-top

  try:
    return make(workdir, inputs)
  except checkpointing.CheckpointNotFoundError:
    found = read(workdir)
    if found is None:
      raise
    return found
