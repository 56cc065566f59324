"""Per-layer access to stacks in either layout, and conversion between the layouts.

A stack (transformer/stack.py) keeps its layers either unrolled, as children 'layer_0' ...
'layer_{N-1}', or scanned, as one child 'layers' whose leaves have a leading layer axis [N, ...].
Code that reads per-layer parameters or sown attention weights (plots, alignments) goes
through these accessors and works for both:

    weights = attention_weights(state['intermediates'], 'decoder', 'cross_attention')
    # [w_layer0, w_layer1, ...], each [batch, heads, q_len, k_len]
    per_layer = layer_trees(params['encoder'])          # [params of layer 0, layer 1, ...]

`to_scanned` / `to_unrolled` convert any pytree (parameters, optimizer state, a restored
checkpoint) from one layout into the other; values are unchanged, so a model with
`scan_layers=True` computes the same function with `to_scanned(params)` as the unrolled model
with `params`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from transformer.stack import SCANNED_NAME, layer_name

_LAYER = re.compile(r"^layer_(\d+)$")


def _unrolled_names(tree: Mapping) -> list[str]:
  """'layer_i' keys of `tree` in layer order (checked to be 0..N-1)."""
  found = sorted((int(m.group(1)), k) for k in tree if (m := _LAYER.match(str(k))))
  if [i for i, _ in found] != list(range(len(found))):
    raise ValueError(f"layers {[k for _, k in found]} are not numbered 0..{len(found) - 1}.")
  return [k for _, k in found]


def is_scanned(stack: Mapping) -> bool:
  """True if the stack's subtree (e.g. params['encoder']) has the scanned layout."""
  return SCANNED_NAME in stack


def num_layers(stack: Mapping) -> int:
  """Number of layers of a stack's subtree (either layout)."""
  if is_scanned(stack):
    leaves = jax.tree.leaves(stack[SCANNED_NAME])
    if not leaves:
      raise ValueError("the scanned 'layers' subtree has no leaves")
    return int(leaves[0].shape[0])
  names = _unrolled_names(stack)
  if not names:
    raise ValueError(f"no 'layer_i' or '{SCANNED_NAME}' in a stack with keys {sorted(stack)}")
  return len(names)


def layer_trees(stack: Mapping) -> list[Any]:
  """Per-layer subtrees [layer 0, layer 1, ...] of a stack (params, cache or intermediates)."""
  n = num_layers(stack)
  if is_scanned(stack):
    return [jax.tree.map(lambda x, i=i: x[i], stack[SCANNED_NAME]) for i in range(n)]
  return [stack[name] for name in _unrolled_names(stack)]


def attention_weights(intermediates: Mapping, stack: str, sublayer: str) -> list[jax.Array]:
  """Sown weights [batch, heads, q_len, k_len] of `sublayer` ('self_attention' |
  'cross_attention') in every layer of `stack` ('encoder' | 'decoder'), in layer order.

  `intermediates`: the 'intermediates' collection returned by
  `model.apply(..., mutable=['intermediates'])`."""
  if stack not in intermediates:
    raise ValueError(f"no {stack!r} in the intermediates (keys {sorted(intermediates)})")
  out = []
  for i, layer in enumerate(layer_trees(intermediates[stack])):
    if sublayer not in layer or "attention_weights" not in layer[sublayer]:
      raise ValueError(f"{stack} layer {i} has no {sublayer!r} attention weights")
    out.append(layer[sublayer]["attention_weights"][0])
  return out


def _map_dicts(tree: Any, fn) -> Any:
  """Applies `fn` bottom-up to every Mapping of `tree` (through tuples, lists, namedtuples)."""
  if isinstance(tree, Mapping):
    return fn({k: _map_dicts(v, fn) for k, v in tree.items()})
  if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # namedtuple (optax states)
    return type(tree)(*[_map_dicts(v, fn) for v in tree])
  if isinstance(tree, (list, tuple)):
    return type(tree)(_map_dicts(v, fn) for v in tree)
  return tree


def to_scanned(tree: Any) -> Any:
  """Every {'layer_0': t0, ..., 'layer_{N-1}': tN} in `tree` becomes {'layers': stack(t_i)}."""

  def stack(d: dict) -> dict:
    names = _unrolled_names(d)
    if not names:
      return d
    rest = {k: v for k, v in d.items() if k not in names}
    layers = [d[k] for k in names]
    rest[SCANNED_NAME] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return rest

  return _map_dicts(tree, stack)


def to_unrolled(tree: Any) -> Any:
  """Inverse of `to_scanned`: every {'layers': [N, ...]} becomes 'layer_0' ... 'layer_{N-1}'."""

  def unstack(d: dict) -> dict:
    if SCANNED_NAME not in d:
      return d
    rest = {k: v for k, v in d.items() if k != SCANNED_NAME}
    for i, layer in enumerate(layer_trees({SCANNED_NAME: d[SCANNED_NAME]})):
      rest[layer_name(i)] = layer
    return rest

  return _map_dicts(tree, unstack)


def param_paths(params: Any) -> list[tuple[str, tuple[int, ...]]]:
  """('a/b/c', shape) of every leaf, sorted: a layout's fingerprint (checkpoint tests)."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  out = []
  for path, leaf in leaves:
    names: Sequence[str] = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    out.append(("/".join(names), tuple(leaf.shape)))
  return sorted(out)
