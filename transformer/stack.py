"""Stacks of identical layers, unrolled or as one `nn.scan`ned layer, with optional remat.

    x = stack_layers(EncoderBlock, block_config, num_layers, x, mask,
                     scan=False, remat="none", deterministic=True)

Call it inside an `@nn.compact` method: it creates the layers as children of the calling
module, so the parameter tree is the same as writing the loop by hand:

* unrolled (`scan=False`): children 'layer_0' ... 'layer_{N-1}', each a `block_cls(config)`
  (the layout of every checkpoint written before scan existed);
* scanned (`scan=True`): ONE child 'layers' whose variables ('params', 'cache',
  'intermediates') have a leading layer axis [N, ...]. XLA compiles the block once, so compile
  time stays flat in depth. `transformer/stack_layout.py` converts between the two layouts and reads
  per-layer parameters and attention weights from either.

`block_cls` is any Linen module class constructed as `block_cls(config, name=...)` and called as
`block(x, *args, **static_kwargs)` -> x of the same shape. Positional `args` (masks, encoder
memory; arrays or None) are the same for every layer; `static_kwargs` (deterministic, decode)
are Python values fixed at trace time. A decoder-only language model reuses this directly:

    x = stack_layers(MyDecoderBlock, cfg.block_config(), cfg.num_layers, x, None,
                     scan=cfg.scan_layers, remat=cfg.remat, deterministic=not train, decode=decode)

`remat` ('none' | 'full' | 'dots_saveable' | 'dots_with_no_batch_dims_saveable') recomputes each
layer's activations in the backward pass instead of storing them ('full': keep nothing;
'dots_*': keep the matmul outputs, `jax.checkpoint_policies`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax

REMAT_POLICIES: dict[str, Optional[Callable[..., bool]]] = {
    "none": None,
    "full": None,  # jax.checkpoint with no policy: nothing saved
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
SCANNED_NAME = "layers"  # the child holding the stacked layers when scanned


def layer_name(i: int) -> str:
  """Name of unrolled layer i ('layer_{i}')."""
  return f"layer_{i}"


@functools.lru_cache(maxsize=None)
def _layer_class(block_cls: type, scanned: bool) -> type:
  """`block_cls` with the static call kwargs as a module field (so remat/scan only see arrays)
  and, for scan, the (carry, output) return convention. Same parameters as `block_cls`."""

  class Layer(block_cls):
    call_kwargs: tuple = ()  # ((name, value), ...) passed to block_cls.__call__

    def __call__(self, x, *args):
      y = block_cls.__call__(self, x, *args, **dict(self.call_kwargs))
      return (y, None) if scanned else y

  Layer.__name__ = Layer.__qualname__ = f"{block_cls.__name__}Layer"
  return Layer


def stack_layers(
    block_cls: type,
    config: Any,
    num_layers: int,
    x: Any,
    *args: Any,
    scan: bool = False,
    remat: str = "none",
    **static_kwargs: Any,
) -> Any:
  """Applies `num_layers` blocks in sequence (see the module docstring). Returns x."""
  if remat not in REMAT_POLICIES:
    raise ValueError(f"unknown remat {remat!r}; choose from {list(REMAT_POLICIES)}.")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
  kwargs = tuple(sorted(static_kwargs.items()))
  if not scan and remat == "none":
    for i in range(num_layers):
      x = block_cls(config, name=layer_name(i))(x, *args, **static_kwargs)
    return x
  layer = _layer_class(block_cls, scan)
  if remat != "none":
    layer = nn.remat(layer, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
  if not scan:
    for i in range(num_layers):
      x = layer(config, call_kwargs=kwargs, name=layer_name(i))(x, *args)
    return x
  scanned = nn.scan(
      layer,
      variable_axes={"params": 0, "cache": 0, "intermediates": 0},
      split_rngs={"params": True, "dropout": True},
      in_axes=(nn.broadcast,) * len(args),
      length=num_layers,
  )
  x, _ = scanned(config, call_kwargs=kwargs, name=SCANNED_NAME)(x, *args)
  return x
