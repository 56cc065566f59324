"""Transformer blocks and stacks: feed-forward, encoder, decoder and causal (decoder-only) blocks.

Every sub-layer (self-attention, cross-attention, feed-forward) is wrapped by
`residual_sublayers` in a residual connection with LayerNorm, in one of two arrangements (`BlockConfig.norm`):

    'post' (the paper, Vaswani et al. 2017):  x = LayerNorm(x + Dropout(Sublayer(x)))
    'pre'  (Xiong et al. 2020):               x = x + Dropout(Sublayer(LayerNorm(x)))

Pre-LN stacks end with a final LayerNorm ('final_norm'). Blocks take their settings from
one frozen `BlockConfig` (attention settings: its `AttentionConfig`). Unrolled stacks name their
blocks 'layer_0' ... 'layer_{N-1}', so the attention weights sown by each layer sit at e.g.
`intermediates['decoder']['layer_1']['cross_attention']['attention_weights']`; scanned stacks
(`scan=True`, transformer/stack.py) hold all layers in one 'layers' child with a leading layer
axis. `transformer.stack_layout` reads per-layer parameters and weights from either layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from transformer import checks
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
    name = "BlockConfig"
    if not isinstance(self.attention, AttentionConfig):
      raise TypeError(
          f"{name}: attention must be an AttentionConfig (AttentionConfig.of converts a dict of "
          f"its fields), got {type(self.attention).__name__}."
      )
    checks.choice(name, "norm", self.norm, NORMS)
    if self.num_heads < 1 or self.d_ff < 1:
      raise ValueError(f"{name}: num_heads={self.num_heads} and d_ff={self.d_ff} must be >= 1.")
    checks.fraction(name, "dropout_rate", self.dropout_rate)

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


def residual_sublayers(
    cfg: BlockConfig, x: Array, deterministic: bool, **sublayers: Callable[[Array], Array]
) -> Array:
  """x through the named sub-layers in order, each in a residual connection with LayerNorm
  (child '{name}_norm'), post-LN or pre-LN (`cfg.norm`); dropout `cfg.dropout_rate` on each
  sub-layer's output. Call inside a compact module (the LayerNorms and Dropouts are its
  children)."""
  for name, sublayer in sublayers.items():
    norm = nn.LayerNorm(dtype=cfg.dtype, name=f"{name}_norm")
    dropout = nn.Dropout(cfg.dropout_rate)
    if cfg.norm == "pre":
      x = x + dropout(sublayer(norm(x)), deterministic=deterministic)
    else:
      x = norm(x + dropout(sublayer(x), deterministic=deterministic))
  return x


class EncoderBlock(nn.Module):
  """Self-attention + FFN, each with residual + LayerNorm. x [b, s, d] -> [b, s, d].

  causal=True (`CausalBlock`): query i sees keys j <= i, the block of a decoder-only model;
  decode: one token per call with the self-attention key/value cache (see multihead.py).
  """

  config: BlockConfig
  causal: bool = False

  @nn.compact
  def __call__(
      self,
      x: Array,
      mask: Optional[Array] = None,
      *,
      deterministic: bool = True,
      decode: bool = False,
  ) -> Array:
    cfg = self.config
    attn = SelfAttention(**cfg.attention_kwargs(), causal=self.causal, name="self_attention")
    ffn = FeedForward(cfg.d_ff, dtype=cfg.dtype, name="ffn")
    return residual_sublayers(
        cfg,
        x,
        deterministic,
        self_attention=lambda h: attn(h, mask, deterministic=deterministic, decode=decode),
        ffn=lambda h: ffn(h, deterministic=deterministic),
    )


class CausalBlock(EncoderBlock):
  """Causal self-attention + FFN (a decoder-only block). x [b, t, d] -> [b, t, d]."""

  causal: bool = True


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
    centers = self._local_m_centers(y.shape[1], memory.shape[1], cross_mask, decode)
    return residual_sublayers(
        cfg,
        y,
        deterministic,
        self_attention=lambda h: self_attn(
            h, self_mask, deterministic=deterministic, decode=decode
        ),
        cross_attention=lambda h: cross_attn(
            h, memory, cross_mask, deterministic=deterministic, centers=centers
        ),
        ffn=lambda h: ffn(h, deterministic=deterministic),
    )

  def _local_m_centers(
      self, q_len: int, k_len: int, cross_mask: Optional[Array], decode: bool
  ) -> Optional[Array]:
    """Local-m cross-attention centres its window on the target position t, clamped to the
    last real source token ([1|b, q_len]); None for other weightings. One token per call
    (decode) is position `step`, not 0: the steps are counted beside the self-attention cache."""
    att = self.config.attention
    if att.weighting != "local" or att.centers != "query":
      return None
    t = jnp.arange(q_len, dtype=jnp.float32)  # [q_len]
    if decode:
      stepping = self.has_variable("cache", "step")
      step = self.variable("cache", "step", lambda: jnp.array(0, jnp.int32))
      if stepping:
        t = step.value.astype(jnp.float32)[None]  # [q_len = 1]
        step.value = step.value + 1
    return local_m_centers(t, cross_mask, k_len)


class Stack(nn.Module):
  """`num_layers` blocks of `block` (+ final LayerNorm for pre-LN): `stack_layers` of
  transformer/stack.py. Called with the block's own arguments: x, then the block's positional
  and keyword arguments (the same for every layer). [b, len, d] -> [b, len, d].

  scan: one `nn.scan`ned layer (params 'layers' [num_layers, ...]) instead of 'layer_i'; with
    scan the decode-cache leaves gain a leading layer axis too.
  remat: rematerialisation policy of each layer (transformer/stack.py).
  """

  config: BlockConfig
  num_layers: int
  scan: bool = False
  remat: str = "none"
  block = None  # the block class (set by each subclass; not a module field)

  @nn.compact
  def __call__(self, x: Array, *args: Any, **static_kwargs: Any) -> Array:
    x = stack_layers(
        self.block,
        self.config,
        self.num_layers,
        x,
        *args,
        scan=self.scan,
        remat=self.remat,
        **static_kwargs,
    )
    if self.config.norm == "pre":
      x = nn.LayerNorm(dtype=self.config.dtype, name="final_norm")(x)
    return x


class Encoder(Stack):
  """EncoderBlocks: `(x [b, s, d], mask=None, *, deterministic=True)`."""

  block = EncoderBlock


class Decoder(Stack):
  """DecoderBlocks: `(y [b, t, d], memory, self_mask=None, cross_mask=None, *,
  deterministic=True, decode=False)`."""

  block = DecoderBlock


class CausalDecoder(Stack):
  """CausalBlocks (a decoder-only language model): `(x [b, t, d], *, deterministic=True,
  decode=False)`."""

  block = CausalBlock
