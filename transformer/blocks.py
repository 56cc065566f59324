"""Transformer blocks and stacks: feed-forward, encoder/decoder blocks, Encoder and Decoder.

Every sub-layer (self-attention, cross-attention, feed-forward) is wrapped in a residual
connection with LayerNorm, in one of two arrangements (`BlockConfig.norm`):

    'post' (the paper, Vaswani et al. 2017):  x = LayerNorm(x + Dropout(Sublayer(x)))
    'pre'  (Xiong et al. 2020):               x = x + Dropout(Sublayer(LayerNorm(x)))

Pre-LN stacks end with a final LayerNorm ('final_norm'). Blocks take their settings from
one frozen `BlockConfig`; the stacks name their blocks 'layer_0' ... 'layer_{N-1}', so the
attention weights sown by each layer sit at e.g.
`intermediates['decoder']['layer_1']['cross_attention']['attention_weights']`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from transformer.multihead import CausalSelfAttention, CrossAttention, SelfAttention

Array = jnp.ndarray

NORMS = ("post", "pre")


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """Settings shared by every block of a stack.

  rope: rotary embeddings in the self-attention layers (never in cross-attention).
  max_len: longest sequence (needed by score='location'; checked with rope / decoding).
  """

  num_heads: int
  d_ff: int
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  score: str = "scaled_dot"
  weighting: str = "soft"
  window: Optional[int] = None
  norm: str = "post"
  rope: bool = False
  max_len: Optional[int] = None
  dtype: Any = jnp.float32

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"BlockConfig: unknown norm {self.norm!r}; choose from {list(NORMS)}.")
    if self.num_heads < 1 or self.d_ff < 1:
      raise ValueError(
          f"BlockConfig: num_heads={self.num_heads} and d_ff={self.d_ff} must be >= 1."
      )
    for name in ("dropout_rate", "attention_dropout_rate"):
      rate = getattr(self, name)
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"BlockConfig: {name} must be in [0, 1), got {rate}.")

  def attention_kwargs(self) -> dict:
    """Keyword arguments shared by every attention layer of the block."""
    return dict(
        num_heads=self.num_heads,
        score=self.score,
        weighting=self.weighting,
        window=self.window,
        max_len=self.max_len,
        straight_through=self.weighting == "hard",  # so hard attention trains
        dropout_rate=self.attention_dropout_rate,
        dtype=self.dtype,
    )


class FeedForward(nn.Module):
  """Position-wise FFN(x) = activation(x W_1 + b_1) W_2 + b_2. [b, len, d] -> [b, len, d]."""

  d_ff: int
  activation: Callable[[Array], Array] = nn.relu
  dropout_rate: float = 0.0  # on the hidden activations (the paper uses none)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool = True) -> Array:
    d_model = x.shape[-1]
    init = nn.initializers.xavier_uniform()
    h = nn.Dense(self.d_ff, dtype=self.dtype, kernel_init=init, name="wi")(x)  # [b, len, d_ff]
    h = nn.Dropout(self.dropout_rate)(self.activation(h), deterministic=deterministic)
    return nn.Dense(d_model, dtype=self.dtype, kernel_init=init, name="wo")(h)


def _residual(
    x: Array,
    sublayer: Callable[[Array], Array],
    norm: nn.Module,
    dropout: nn.Module,
    arrangement: str,
    deterministic: bool,
) -> Array:
  """Residual connection with LayerNorm, post-LN or pre-LN."""
  if arrangement == "pre":
    return x + dropout(sublayer(norm(x)), deterministic=deterministic)
  return norm(x + dropout(sublayer(x), deterministic=deterministic))


class EncoderBlock(nn.Module):
  """Self-attention + FFN, each with residual + LayerNorm. x [b, s, d] -> [b, s, d]."""

  config: BlockConfig

  @nn.compact
  def __call__(
      self, x: Array, mask: Optional[Array] = None, *, deterministic: bool = True
  ) -> Array:
    cfg = self.config
    attn = SelfAttention(rope=cfg.rope, **cfg.attention_kwargs(), name="self_attention")
    ffn = FeedForward(cfg.d_ff, dtype=cfg.dtype, name="ffn")
    norm = lambda name: nn.LayerNorm(dtype=cfg.dtype, name=name)  # noqa: E731
    x = _residual(
        x,
        lambda h: attn(h, mask, deterministic=deterministic),
        norm("self_attention_norm"),
        nn.Dropout(cfg.dropout_rate),
        cfg.norm,
        deterministic,
    )
    return _residual(
        x,
        lambda h: ffn(h, deterministic=deterministic),
        norm("ffn_norm"),
        nn.Dropout(cfg.dropout_rate),
        cfg.norm,
        deterministic,
    )


class DecoderBlock(nn.Module):
  """Causal self-attention + cross-attention over the memory + FFN. y [b, t, d] -> [b, t, d].

  self_mask: extra mask for the self-attention (the causal mask is always applied).
  cross_mask: memory padding mask [b, 1, 1, s].
  decode: one token per call with the self-attention key/value cache (see multihead.py).
  """

  config: BlockConfig

  @nn.compact
  def __call__(
      self,
      y: Array,
      memory: Array,
      self_mask: Optional[Array] = None,
      cross_mask: Optional[Array] = None,
      *,
      deterministic: bool = True,
      decode: bool = False,
  ) -> Array:
    cfg = self.config
    self_attn = CausalSelfAttention(rope=cfg.rope, **cfg.attention_kwargs(), name="self_attention")
    cross_attn = CrossAttention(**cfg.attention_kwargs(), name="cross_attention")
    ffn = FeedForward(cfg.d_ff, dtype=cfg.dtype, name="ffn")
    norm = lambda name: nn.LayerNorm(dtype=cfg.dtype, name=name)  # noqa: E731
    y = _residual(
        y,
        lambda h: self_attn(h, self_mask, deterministic=deterministic, decode=decode),
        norm("self_attention_norm"),
        nn.Dropout(cfg.dropout_rate),
        cfg.norm,
        deterministic,
    )
    y = _residual(
        y,
        lambda h: cross_attn(h, memory, cross_mask, deterministic=deterministic),
        norm("cross_attention_norm"),
        nn.Dropout(cfg.dropout_rate),
        cfg.norm,
        deterministic,
    )
    return _residual(
        y,
        lambda h: ffn(h, deterministic=deterministic),
        norm("ffn_norm"),
        nn.Dropout(cfg.dropout_rate),
        cfg.norm,
        deterministic,
    )


class Encoder(nn.Module):
  """A stack of `num_layers` EncoderBlocks (+ final LayerNorm for pre-LN). [b, s, d] -> [b, s, d]."""

  config: BlockConfig
  num_layers: int

  @nn.compact
  def __call__(
      self, x: Array, mask: Optional[Array] = None, *, deterministic: bool = True
  ) -> Array:
    for i in range(self.num_layers):
      x = EncoderBlock(self.config, name=f"layer_{i}")(x, mask, deterministic=deterministic)
    if self.config.norm == "pre":
      x = nn.LayerNorm(dtype=self.config.dtype, name="final_norm")(x)
    return x


class Decoder(nn.Module):
  """A stack of `num_layers` DecoderBlocks (+ final LayerNorm for pre-LN). [b, t, d] -> [b, t, d]."""

  config: BlockConfig
  num_layers: int

  @nn.compact
  def __call__(
      self,
      y: Array,
      memory: Array,
      self_mask: Optional[Array] = None,
      cross_mask: Optional[Array] = None,
      *,
      deterministic: bool = True,
      decode: bool = False,
  ) -> Array:
    for i in range(self.num_layers):
      y = DecoderBlock(self.config, name=f"layer_{i}")(
          y, memory, self_mask, cross_mask, deterministic=deterministic, decode=decode
      )
    if self.config.norm == "pre":
      y = nn.LayerNorm(dtype=self.config.dtype, name="final_norm")(y)
    return y
