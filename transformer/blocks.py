"""Transformer blocks and stacks: feed-forward, encoder/decoder blocks, Encoder and Decoder.

Every sub-layer (self-attention, cross-attention, feed-forward) is wrapped in a residual
connection with LayerNorm, in one of two arrangements (`BlockConfig.norm`):

    'post' (the paper, Vaswani et al. 2017):  x = LayerNorm(x + Dropout(Sublayer(x)))
    'pre'  (Xiong et al. 2020):               x = x + Dropout(Sublayer(LayerNorm(x)))

Pre-LN stacks end with a final LayerNorm ('final_norm'). Blocks take their settings from
one frozen `BlockConfig` (attention settings: its `AttentionConfig`). Unrolled stacks name their
blocks 'layer_0' ... 'layer_{N-1}', so the attention weights sown by each layer sit at e.g.
`intermediates['decoder']['layer_1']['cross_attention']['attention_weights']`; scanned stacks
(`scan=True`, transformer/stack.py) hold all layers in one 'layers' child with a leading layer
axis. `transformer.layers` reads per-layer parameters and weights from either layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from transformer.attention_config import AttentionConfig
from transformer.masks import local_m_centers
from transformer.multihead import CausalSelfAttention, CrossAttention, SelfAttention
from transformer.stack import stack_layers

Array = jnp.ndarray

NORMS = ("post", "pre")


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """Settings shared by every block of a stack.

  The self-attention layers use `attention` as given (RoPE when `attention.rope`); the
  cross-attention layers the same settings without RoPE.
  """

  num_heads: int
  d_ff: int
  dropout_rate: float = 0.1  # on each sub-layer's output (and the FFN hidden units: none)
  attention: AttentionConfig = AttentionConfig()  # every attention setting
  norm: str = "post"  # 'post' (paper) | 'pre'
  max_len: Optional[int] = None  # longest sequence (score='location'; checked with RoPE/decoding)
  dtype: Any = jnp.float32  # computation dtype (parameters stay float32)

  def __post_init__(self):
    object.__setattr__(self, "attention", AttentionConfig.of(self.attention))
    if self.norm not in NORMS:
      raise ValueError(f"BlockConfig: unknown norm {self.norm!r}; choose from {list(NORMS)}.")
    if self.num_heads < 1 or self.d_ff < 1:
      raise ValueError(
          f"BlockConfig: num_heads={self.num_heads} and d_ff={self.d_ff} must be >= 1."
      )
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"BlockConfig: dropout_rate must be in [0, 1), got {self.dropout_rate}.")

  def attention_kwargs(self, cross: bool = False) -> dict:
    """Keyword arguments of the block's attention layers (cross-attention: no RoPE)."""
    attention = self.attention.replace(rope=False) if cross else self.attention
    return dict(num_heads=self.num_heads, config=attention, max_len=self.max_len, dtype=self.dtype)


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
    attn = SelfAttention(**cfg.attention_kwargs(), name="self_attention")
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
    self_attn = CausalSelfAttention(**cfg.attention_kwargs(), name="self_attention")
    cross_attn = CrossAttention(**cfg.attention_kwargs(cross=True), name="cross_attention")
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
    # Local-m cross-attention centres its window on the target position t, clamped to the last
    # real source token. One token per call (decode) is position `step`, not 0: count the steps
    # beside the self-attention cache.
    centers = None
    att = cfg.attention
    if att.weighting == "local" and att.centers == "query":
      t = jnp.arange(y.shape[1], dtype=jnp.float32)  # [q_len]
      if decode:
        stepping = self.has_variable("cache", "step")
        step = self.variable("cache", "step", lambda: jnp.array(0, jnp.int32))
        if stepping:
          t = step.value.astype(jnp.float32)[None]  # [q_len = 1]
          step.value = step.value + 1
      centers = local_m_centers(t, cross_mask, memory.shape[1])  # [1|b, q_len]
    y = _residual(
        y,
        lambda h: cross_attn(h, memory, cross_mask, deterministic=deterministic, centers=centers),
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
  """A stack of `num_layers` EncoderBlocks (+ final LayerNorm for pre-LN). [b, s, d] -> [b, s, d].

  scan: one `nn.scan`ned layer (params 'layers' [num_layers, ...]) instead of 'layer_i'.
  remat: rematerialisation policy of each layer (transformer/stack.py).
  """

  config: BlockConfig
  num_layers: int
  scan: bool = False
  remat: str = "none"

  @nn.compact
  def __call__(
      self, x: Array, mask: Optional[Array] = None, *, deterministic: bool = True
  ) -> Array:
    x = stack_layers(
        EncoderBlock,
        self.config,
        self.num_layers,
        x,
        mask,
        scan=self.scan,
        remat=self.remat,
        deterministic=deterministic,
    )
    if self.config.norm == "pre":
      x = nn.LayerNorm(dtype=self.config.dtype, name="final_norm")(x)
    return x


class Decoder(nn.Module):
  """A stack of `num_layers` DecoderBlocks (+ final LayerNorm for pre-LN). [b, t, d] -> [b, t, d].

  scan / remat as in `Encoder`; with scan the decode cache leaves gain a leading layer axis.
  """

  config: BlockConfig
  num_layers: int
  scan: bool = False
  remat: str = "none"

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
    y = stack_layers(
        DecoderBlock,
        self.config,
        self.num_layers,
        y,
        memory,
        self_mask,
        cross_mask,
        scan=self.scan,
        remat=self.remat,
        deterministic=deterministic,
        decode=decode,
    )
    if self.config.norm == "pre":
      y = nn.LayerNorm(dtype=self.config.dtype, name="final_norm")(y)
    return y
