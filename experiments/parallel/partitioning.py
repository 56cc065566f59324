"""Logical axis names of the model's parameters, and the rules that map them to mesh axes.

The modules in `transformer/` carry no sharding annotations; this file assigns them from the
outside. `PARAM_RULES` maps a parameter's path (e.g. `encoder/layer_0/self_attention/query/
kernel`) to the logical names of its axes (`('embed', 'heads', 'kv')`). A tree scanned over
layers (`nn.scan`, one stacked leaf per parameter with a leading layer axis) gets `'layers'`
prepended: a leaf with one more dimension than its rule names is a stacked one. The same path
rules cover the optimizer state, whose moments mirror the parameter tree (`opt_state/0/mu/
encoder/...`); a leaf that matches no rule (the step counter, RNG keys, score parameters of
exotic attention variants) is replicated and listed in a debug log message.

`LOGICAL_RULES` then maps logical names to the mesh axes of `experiments/parallel/sharding.py`, through
Flax's logical partitioning (`flax.linen.logical_to_mesh_axes`):
  batch  -> ('data', 'fsdp')   every device that is not a tensor shard holds distinct rows
  embed  -> 'fsdp'             FSDP: parameters and optimizer state split over 'fsdp'
  heads, mlp, vocab -> 'tensor'  tensor parallelism: attention heads, the FFN hidden
                               dimension and the vocabulary split over 'tensor'
  layers, kv, norm, ... -> None  replicated
A dimension that the mesh axis does not divide (e.g. 2 heads over 8 tensor shards) stays
replicated on that axis, so any mesh runs any model.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# (regex searched in the '/'-joined leaf path, logical axes of the unscanned parameter).
# First match wins. Paths come from transformer/multihead.py (query/key/value/out
# DenseGeneral), blocks.py (ffn/wi, ffn/wo, *_norm, final_norm), models.py and
# classifier.py.
PARAM_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r'(query|key|value)/kernel$', ('embed', 'heads', 'kv')),  # [d_model, heads, d_k]
    (r'(query|key|value)/bias$', ('heads', 'kv')),
    (r'/out/kernel$', ('heads', 'kv', 'embed')),  # [heads, d_k, d_model]
    (r'/out/bias$', ('norm',)),
    (r'ffn/wi/kernel$', ('embed', 'mlp')),  # [d_model, d_ff]
    (r'ffn/wi/bias$', ('mlp',)),
    (r'ffn/wo/kernel$', ('mlp', 'embed')),  # [d_ff, d_model]
    (r'ffn/wo/bias$', ('norm',)),
    (r'norm/(scale|bias)$', ('norm',)),  # LayerNorm [d_model]
    (r'pos\w*/embedding$', ('length', 'embed')),  # learned positions [max_len, d_model]
    (r'embed\w*/embedding$', ('vocab', 'embed')),  # token tables [vocab, d_model]
    (r'output_proj/kernel$', ('embed', 'vocab')),  # untied output layer
    (r'output_proj/bias$', ('vocab',)),
    (r'head/kernel$', ('embed', 'classes')),  # classifier head
    (r'head/bias$', ('classes',)),
    (r'patch_embedding/kernel$', ('patch', 'embed')),
    (r'patch_embedding/bias$', ('norm',)),
    (r'(^|/)cls$', (None, None, 'norm')),  # [1, 1, d_model]
    (r'stem_conv_\d+/kernel$', (None, None, None, None)),  # small conv stem
    (r'stem_conv_\d+/bias$', (None,)),
)

# Logical axis -> mesh axis (or axes, or None = replicated). Axes not listed replicate.
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ('batch', ('data', 'fsdp')),
    ('embed', 'fsdp'),
    ('heads', 'tensor'),
    ('mlp', 'tensor'),
    ('vocab', 'tensor'),
    ('kv', None),
    ('layers', None),
    ('length', None),
    ('norm', None),
    ('classes', None),
    ('patch', None),
)


def path_string(path: tuple[Any, ...]) -> str:
  """A jax key path as 'a/b/0/c' (dict keys, attribute names and sequence indices)."""
  names = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        names.append(str(getattr(k, attr)))
        break
  return '/'.join(names)


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...] | None:
  """Logical axis names of a leaf of rank `ndim` at `path`, or None when no rule fits."""
  for pattern, axes in PARAM_RULES:
    if re.search(pattern, path):
      if ndim == len(axes):
        return axes
      if ndim == len(axes) + 1:  # stacked by nn.scan: leading layer axis
        return ('layers', *axes)
      return None
  return None


def mesh_spec(axes: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mesh) -> P:
  """PartitionSpec of a leaf with logical `axes`: Flax's logical-to-mesh mapping under
  LOGICAL_RULES, with mesh axes that do not divide their dimension dropped."""
  spec = nn.logical_to_mesh_axes(axes, LOGICAL_RULES)
  out = []
  for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    names = tuple(n for n in names if n in mesh.shape and mesh.shape[n] > 1)
    size = 1
    for n in names:
      size *= mesh.shape[n]
    if not names or dim % size:
      out.append(None)
    else:
      out.append(names[0] if len(names) == 1 else names)
  return P(*out)


def tree_shardings(mesh: Mesh, abstract_tree: Any) -> Any:
  """NamedSharding for every leaf (anything with .shape) of a pytree, by PARAM_RULES."""
  unmatched = []

  def one(path, leaf):
    shape = tuple(getattr(leaf, 'shape', ()))
    name = path_string(path)
    axes = logical_axes(name, len(shape)) if shape else None
    if axes is None:
      if shape and max(shape) > 1:
        unmatched.append(f'{name} {shape}')
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, mesh_spec(axes, shape, mesh))

  out = jax.tree_util.tree_map_with_path(one, abstract_tree)
  if unmatched:
    logging.debug(
        'No partitioning rule for %d leaves (replicated): %s', len(unmatched), ', '.join(unmatched)
    )
  return out


def per_device_bytes(tree: Any, shardings: Any) -> int:
  """Bytes of the largest per-device share of a tree of ShapeDtypeStructs/arrays placed with
  `shardings` (the memory one device needs for it)."""
  totals: dict[Any, int] = {}
  for leaf, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    shard = s.shard_shape(tuple(leaf.shape))
    size = leaf.dtype.itemsize
    for d in shard:
      size *= d
    for device, _ in s.devices_indices_map(tuple(leaf.shape)).items():
      totals[device] = totals.get(device, 0) + size
  return max(totals.values()) if totals else 0
