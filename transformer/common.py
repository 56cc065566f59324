"""What the model configs and models share: compute dtypes, the checks of the common fields,
the stacks' `BlockConfig`, positional layers and token-id checks.

Used by transformer/models.py (encoder-decoder), classifier.py and language_model.py.
The model configs are the boundary where a dict of attention settings (from a ConfigDict)
becomes an `AttentionConfig` (`check_model_config`); everything below them takes the config.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from transformer import checks
from transformer.attention_config import AttentionConfig
from transformer.blocks import NORMS, BlockConfig
from transformer.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    check_length,
)
from transformer.stack import REMAT_POLICIES

Array = jnp.ndarray

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_model_config(name: str, cfg: Any, positionals: tuple[str, ...]) -> None:
  """Validation shared by the model configs (fields d_model, num_heads, d_ff, dropout_rate,
  positional, norm, dtype, remat, attention). Converts a dict `attention` (from a ConfigDict)
  into an AttentionConfig: call it in the config's `__post_init__`."""
  object.__setattr__(cfg, "attention", AttentionConfig.of(cfg.attention))
  checks.at_least(name, cfg, ("d_model", "num_heads", "d_ff"))
  if cfg.d_model % cfg.num_heads:
    raise ValueError(
        f"{name}: num_heads={cfg.num_heads} does not divide d_model={cfg.d_model} "
        "(d_k = d_model / num_heads)."
    )
  checks.fraction(name, "dropout_rate", cfg.dropout_rate)
  checks.choice(name, "positional", cfg.positional, positionals)
  checks.choice(name, "norm", cfg.norm, NORMS)
  checks.choice(name, "dtype", cfg.dtype, DTYPES)
  checks.choice(name, "remat", getattr(cfg, "remat", "none"), REMAT_POLICIES)
  if cfg.positional == "sinusoidal" and cfg.d_model % 2:
    raise ValueError(f"{name}: positional='sinusoidal' needs an even d_model, got {cfg.d_model}.")
  if uses_rope(cfg) and (cfg.d_model // cfg.num_heads) % 2:
    raise ValueError(
        f"{name}: positional='rope' needs an even head width d_model/num_heads = "
        f"{cfg.d_model}/{cfg.num_heads} = {cfg.d_model // cfg.num_heads}."
    )


def uses_rope(cfg: Any) -> bool:
  return cfg.positional == "rope" or cfg.attention.rope


def block_config(cfg: Any, max_len: int) -> BlockConfig:
  """The stacks' BlockConfig of a model config; positional='rope' switches RoPE on in
  self-attention."""
  return BlockConfig(
      num_heads=cfg.num_heads,
      d_ff=cfg.d_ff,
      dropout_rate=cfg.dropout_rate,
      attention=cfg.attention.replace(rope=uses_rope(cfg)),
      norm=cfg.norm,
      max_len=max_len,
      dtype=DTYPES[cfg.dtype],
  )


def positional_layer(kind: str, max_len: int, name: Optional[str] = None) -> Optional[nn.Module]:
  """The layer adding positions to the embeddings, or None ('rope': inside attention; 'none')."""
  if kind == "sinusoidal":
    return SinusoidalPositionalEncoding(max_len=max_len, name=name)
  if kind == "learned":
    return LearnedPositionalEmbedding(max_len=max_len, name=name)
  return None


def check_ids(ids: Array, what: str, max_len: int) -> None:
  """`ids` are integer token ids [batch, len] with len <= max_len."""
  if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"{what} must be integer token ids [batch, len], got {ids.dtype}{ids.shape}.")
  check_length(ids.shape[1], max_len, what)
