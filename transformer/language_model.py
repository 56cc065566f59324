"""A decoder-only Transformer language model (causal self-attention blocks, no cross-attention).

    cfg = LanguageModelConfig(vocab_size=8000, d_model=256, num_heads=4, num_layers=4, d_ff=1024)
    model = LanguageModel(cfg)
    logits = model.apply({'params': params}, ids)        # ids [b, t] -> logits float32 [b, t, V]

Logits at position i depend only on ids[:, :i + 1] (every self-attention layer is causal).
The blocks are the library's `CausalBlock`s (transformer/blocks.py: causal self-attention and
feed-forward sub-layers, post-LN or pre-LN, `BlockConfig.norm`), stacked as the
`CausalDecoder` 'decoder' (unrolled 'layer_i' or, with `scan_layers`, one scanned 'layers').
The attention weights of every layer, [b, heads, t, t]:
`transformer.stack_layout.attention_weights(state['intermediates'], 'decoder', 'self_attention')`.

Incremental decoding (one token per call, the key/value cache of multihead.py):

    cache = model.init_cache(batch_size, max_decode_len)     # the 'cache' collection (zeros)
    logits, mutated = model.apply({'params': params, 'cache': cache}, ids[:, t:t + 1],
                                  decode=True, mutable=['cache'])   # logits [b, 1, V]
    cache = mutated['cache']

Feeding ids[:, 0], ids[:, 1], ... one per call gives the same logits as the full pass.
`transformer/sampling.py` samples continuations over this cache.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer import checks
from transformer.attention_config import AttentionConfig
from transformer.blocks import BlockConfig, CausalDecoder
from transformer import common
from transformer.common import DTYPES, check_ids, check_model_config, positional_layer
from transformer.models import ARCHITECTURES, RNN_CELLS

Array = jnp.ndarray

LM_POSITIONALS = ("sinusoidal", "learned", "rope", "none")


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
  """Settings of `LanguageModel` (defaults: a small pre-LN model)."""

  vocab_size: int  # token ids 0 .. vocab_size - 1
  d_model: int = 256  # width of the residual stream
  num_heads: int = 4  # attention heads per layer
  num_layers: int = 4  # decoder-only blocks
  d_ff: int = 1024  # hidden width of the feed-forward sub-layer
  dropout_rate: float = 0.1  # on embeddings and every sub-layer output
  max_len: int = 256  # longest sequence (positional tables, decode cache)
  positional: str = "sinusoidal"  # 'sinusoidal' | 'learned' | 'rope' | 'none' (NoPE)
  attention: AttentionConfig = AttentionConfig()  # every attention setting (score, weighting, ...)
  norm: str = "pre"  # 'pre' | 'post' (the paper)
  tie_output_embedding: bool = True  # logits = x · Eᵀ
  # Compute dtype 'float32' | 'bfloat16' (parameters, softmax, LayerNorm statistics and the
  # logits stay float32).
  dtype: str = "float32"
  scan_layers: bool = False  # the blocks as one nn.scan'ned layer (compile time flat in depth)
  remat: str = "none"  # 'none' | 'full' | 'dots_saveable' | 'dots_with_no_batch_dims_saveable'
  pad_id: int = 0  # padding id (ignored by the task's loss)
  # 'transformer' (LanguageModel) | 'rnn' (transformer/rnn_language_model.py: num_layers stacked
  # recurrent layers of d_model units; num_heads, d_ff, positional, norm, attention unused).
  architecture: str = "transformer"
  rnn_cell: str = "gru"  # architecture='rnn': 'gru' (nn.GRUCell) | 'lstm' (nn.OptimizedLSTMCell)

  def __post_init__(self):
    name = "LanguageModelConfig"
    checks.choice(name, "architecture", self.architecture, ARCHITECTURES)
    checks.choice(name, "rnn_cell", self.rnn_cell, RNN_CELLS)
    check_model_config(name, self, LM_POSITIONALS)
    checks.at_least(name, self, ("vocab_size", "num_layers", "max_len"))
    if not 0 <= self.pad_id < self.vocab_size:
      raise ValueError(
          f"{name}: pad_id={self.pad_id} is outside the vocabulary (size {self.vocab_size})."
      )

  def block_config(self) -> BlockConfig:
    return common.block_config(self, self.max_len)


class LanguageModel(nn.Module):
  """Token embedding (+ positions) -> `num_layers` CausalBlocks -> logits over the vocabulary.

    `__call__(ids [b, t] int, train=False, decode=False) -> logits float32 [b, t, vocab]`.
    Embeddings are scaled by √d_model as in the paper; the output layer is the transposed
    embedding table when `tie_output_embedding`. The blocks form the stack 'decoder' (pre-LN:
  with a final LayerNorm), unrolled or scanned (`scan_layers`).
  """

  config: LanguageModelConfig

  @nn.compact
  def __call__(self, ids: Array, *, train: bool = False, decode: bool = False) -> Array:
    cfg = self.config
    dtype = DTYPES[cfg.dtype]
    check_ids(ids, "ids", cfg.max_len)
    embed = nn.Embed(
        cfg.vocab_size,
        cfg.d_model,
        dtype=dtype,
        embedding_init=nn.initializers.normal(stddev=cfg.d_model**-0.5),
        name="embed",
    )
    x = embed(ids) * jnp.sqrt(cfg.d_model).astype(dtype)  # [b, t, d]
    x = self._hidden(x, train, decode)  # [b, t, d]
    if cfg.tie_output_embedding:
      logits = embed.attend(x)  # x · Eᵀ
    else:
      logits = nn.Dense(cfg.vocab_size, dtype=dtype, name="output_proj")(x)
    return logits.astype(jnp.float32)

  def _hidden(self, x: Array, train: bool, decode: bool) -> Array:
    """The embedded tokens [b, t, d] -> the top layer's output [b, t, d]: positions, dropout
    and the CausalDecoder stack (a subclass replaces this, e.g. RNNLanguageModel)."""
    cfg = self.config
    pos = positional_layer(cfg.positional, cfg.max_len, "pos_embedding")
    if pos is not None:
      x = pos(x, decode=decode)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    return CausalDecoder(
        cfg.block_config(),
        cfg.num_layers,
        scan=cfg.scan_layers,
        remat=cfg.remat,
        name="decoder",
    )(x, deterministic=not train, decode=decode)

  @nn.nowrap
  def init_cache(self, batch_size: int, max_decode_len: int) -> dict:
    """An empty decode cache (the 'cache' collection) for `max_decode_len` tokens.

    Call on the unbound model (outside `apply`); shapes come from `jax.eval_shape`, every
    leaf starts at zero. max_decode_len > max_len raises a ValueError.
    """
    model = type(self)(self.config, parent=None)
    ids = jnp.ones((batch_size, max_decode_len), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), ids, decode=True))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


def count_parameters(params) -> dict[str, int]:
  """{'total': all parameters, 'non_embedding': without the token and position tables}.

  Non-embedding counts follow Kaplan et al. 2020 (the output layer counts as embedding
  when tied, since it is the same table; an untied output projection is counted).
  """
  total = non_embedding = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    n = int(leaf.size)
    total += n
    names = {getattr(k, "key", None) for k in path}
    if not names & {"embed", "pos_embedding"}:
      non_embedding += n
  return {"total": total, "non_embedding": non_embedding}
