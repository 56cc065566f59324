"""The encoder classifier: images as sequences of patches -> Transformer encoder -> class logits.

One frozen config dataclass (`ClassifierConfig`); bad settings raise a ValueError naming the
values when the config is created. Dropout runs with `train=True` and needs the 'dropout' RNG
stream. Every attention layer sows its weights into 'intermediates' (see multihead.py), e.g.

    logits, state = model.apply(variables, images, mutable=['intermediates'])
    w = stack_layout.attention_weights(state['intermediates'], 'encoder', 'self_attention')[0]
    # w: [batch, heads, tokens, tokens] of layer 0 ([CLS] first with pooling='cls')

The translation model is in transformer/models.py, the language model in language_model.py; the
configs' shared fields and pieces: transformer/common.py.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from transformer import checks
from transformer import common
from transformer.attention_config import AttentionConfig
from transformer.blocks import BlockConfig, Encoder
from transformer.common import DTYPES, check_model_config, positional_layer

Array = jnp.ndarray

POOLINGS = ("cls", "mean")
STEMS = ("linear", "conv")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """Settings of `EncoderClassifier` (defaults: a small MNIST model)."""

  image_size: tuple[int, int] = (28, 28)
  channels: int = 1
  patch_size: int = 4
  num_classes: int = 10
  d_model: int = 64
  num_heads: int = 4
  num_layers: int = 4
  d_ff: int = 128
  dropout_rate: float = 0.1  # on the tokens and every sub-layer output
  pooling: str = "cls"  # 'cls' | 'mean'
  # 'linear': ViT patch embedding (one Dense on each flattened patch); 'conv': convolutional
  # stem (Xiao et al. 2021, "Early convolutions help transformers see better"): log2(patch_size)
  # stride-2 3x3 convs + ReLU, then a 1x1 projection; same patch grid, overlapping receptive fields.
  # The conv stem pads ('SAME'), so its patch_size need not divide the image: 28x28 with
  # patch_size 8 gives a 4x4 grid (ceil(28 / 8)); the linear stem needs patch_size | image_size.
  stem: str = "linear"
  positional: str = "learned"  # 'learned' | 'sinusoidal' | 'rope' | 'none'
  attention: AttentionConfig = AttentionConfig()  # every attention setting
  norm: str = "pre"  # 'pre' | 'post'
  dtype: str = "float32"  # compute dtype 'float32' | 'bfloat16' (params, softmax, LN stay fp32)
  scan_layers: bool = False  # the encoder as one nn.scan'ned layer (compile time flat in depth)
  remat: str = "none"  # 'none' | 'full' | 'dots_saveable' | 'dots_with_no_batch_dims_saveable'

  def __post_init__(self):
    name = "ClassifierConfig"
    object.__setattr__(self, "image_size", tuple(self.image_size))  # lists from configs
    if len(self.image_size) != 2 or min(self.image_size) < 1:
      raise ValueError(f"{name}: image_size must be (height, width) >= 1, got {self.image_size}.")
    checks.at_least(name, self, ("channels", "patch_size", "num_classes", "num_layers"))
    if self.stem != "conv" and any(s % self.patch_size for s in self.image_size):
      raise ValueError(
          f"{name}: patch_size={self.patch_size} does not divide image_size={self.image_size} "
          "(stem='linear'; the padded conv stem takes any power of two)."
      )
    checks.choice(name, "pooling", self.pooling, POOLINGS)
    checks.choice(name, "stem", self.stem, STEMS)
    if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
      raise ValueError(
          f"{name}: stem='conv' needs a power-of-two patch_size (one stride-2 conv per "
          f"halving), got {self.patch_size}."
      )
    check_model_config(name, self, ("learned", "sinusoidal", "rope", "none"))

  @property
  def patch_grid(self) -> tuple[int, int]:
    return patch_grid(self.image_size, self.patch_size)

  @property
  def num_patches(self) -> int:
    rows, cols = self.patch_grid
    return rows * cols

  @property
  def num_tokens(self) -> int:
    """Sequence length seen by the encoder: patches (+1 for [CLS])."""
    return self.num_patches + (self.pooling == "cls")

  @property
  def stem_widths(self) -> list[int]:
    """Output widths of the conv stem's stride-2 convs: d/2^k ... d/2 (at least 8), one per
    halving of the image down to the patch grid."""
    num_convs = self.patch_size.bit_length() - 1  # p = 2^num_convs
    return [max(self.d_model // 2 ** (num_convs - i), 8) for i in range(num_convs)]

  def block_config(self) -> BlockConfig:
    return common.block_config(self, self.num_tokens)


def patch_grid(image_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
  """(rows, columns) of patch tokens: image_size / patch_size, rounded up for the padded
  conv stem (each stride-2 conv gives ceil(n / 2), and ceil(ceil(n / a) / b) = ceil(n / ab))."""
  return tuple(-(-s // patch_size) for s in image_size)


def patchify(images: Array, patch_size: int) -> Array:
  """images [b, H, W, c] -> patches [b, (H/p)·(W/p), p·p·c], row-major over the patch grid.

  Patch n = (row n // (W/p), column n % (W/p)); its pixels are flattened as (y, x, channel).
  """
  b, height, width, c = images.shape
  p = patch_size
  x = images.reshape(b, height // p, p, width // p, p, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [b, H/p, W/p, p, p, c]
  return x.reshape(b, (height // p) * (width // p), p * p * c)


def conv_stem(images: Array, widths: list[int], d_model: int, dtype) -> Array:
  """images [b, H, W, c] -> tokens [b, (H/p)·(W/p), d_model], row-major like `patchify`.

  One stride-2 3x3 conv + ReLU per entry of `widths` (`ClassifierConfig.stem_widths`) brings the
  grid to H/p x W/p; a 1x1 projection (Dense) gives the token width. Token n still covers patch
  n (plus a border). Call inside a compact module: layers stem_conv_{i} and patch_embedding.
  """
  x = images
  for i, width in enumerate(widths):
    x = nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME", dtype=dtype, name=f"stem_conv_{i}")(
        x
    )
    x = nn.relu(x)
  b, h, w, c = x.shape
  return nn.Dense(d_model, dtype=dtype, name="patch_embedding")(x.reshape(b, h * w, c))


class EncoderClassifier(nn.Module):
  """Images -> patch tokens -> Transformer encoder -> [CLS] or mean pooling -> class logits.

  `__call__(images [b, H, W, c] float in [0, 1], train=False) -> logits float32 [b, classes]`.
  With pooling='cls' a learned [CLS] token is token 0, followed by the patches row-major.
  """

  config: ClassifierConfig

  @nn.compact
  def __call__(self, images: Array, *, train: bool = False) -> Array:
    cfg = self.config
    dtype = DTYPES[cfg.dtype]
    expected = (*cfg.image_size, cfg.channels)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
      raise ValueError(
          f"EncoderClassifier: images must be [batch, {expected[0]}, {expected[1]}, "
          f"{expected[2]}] (config image_size/channels), got shape {images.shape}."
      )
    if cfg.stem == "conv":
      x = conv_stem(images.astype(dtype), cfg.stem_widths, cfg.d_model, dtype)  # [b, n, d]
    else:
      x = patchify(images.astype(dtype), cfg.patch_size)  # [b, n, p·p·c]
      x = nn.Dense(cfg.d_model, dtype=dtype, name="patch_embedding")(x)  # [b, n, d]
    if cfg.pooling == "cls":
      cls = self.param("cls", nn.initializers.normal(stddev=0.02), (1, 1, cfg.d_model))
      cls = jnp.broadcast_to(cls.astype(dtype), (x.shape[0], 1, cfg.d_model))
      x = jnp.concatenate([cls, x], axis=1)  # [b, 1 + n, d]
    pos = positional_layer(cfg.positional, cfg.num_tokens, "pos_embedding")
    if pos is not None:
      x = pos(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    x = Encoder(
        cfg.block_config(), cfg.num_layers, scan=cfg.scan_layers, remat=cfg.remat, name="encoder"
    )(x, deterministic=not train)
    pooled = x[:, 0] if cfg.pooling == "cls" else x.mean(axis=1)  # [b, d]
    return nn.Dense(cfg.num_classes, dtype=dtype, name="head")(pooled).astype(jnp.float32)
