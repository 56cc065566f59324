"""The encoder–decoder for translation (the image classifier: transformer/classifier.py).

Each model takes one frozen config dataclass; bad settings raise a ValueError naming the values
when the config is created. Dropout runs with `train=True` and needs the 'dropout' RNG stream.
Every attention layer sows its weights into 'intermediates' (see multihead.py), e.g.

    logits, state = model.apply(variables, src, tgt_in, mutable=['intermediates'])
    w = stack_layout.attention_weights(state['intermediates'], 'decoder', 'cross_attention')[0]
    # w: [batch, heads, tgt_len, src_len] of layer 0 (unrolled or scanned stacks alike)

`EncoderDecoderConfig.architecture='rnn'` selects the recurrent baseline instead,
`transformer.rnn.RNNEncoderDecoder`: a subclass of `EncoderDecoder` with the same interface
(`rnn.encoder_decoder(cfg)` builds the model a config names).

`scan_layers=True` compiles each stack as one scanned layer; `transformer.stack_layout` converts
parameters (and checkpoints) between the unrolled and the scanned layout. The configs' shared
fields and pieces: transformer/common.py.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer import checks
from transformer.attention_config import AttentionConfig
from transformer.blocks import BlockConfig, Decoder, Encoder
from transformer import common
from transformer.common import DTYPES, check_ids, check_model_config, positional_layer
from transformer.masks import padding_mask

Array = jnp.ndarray

ARCHITECTURES = ("transformer", "rnn")
RNN_CELLS = ("gru", "lstm")


@dataclasses.dataclass(frozen=True)
class EncoderDecoderConfig:
  """Settings of `EncoderDecoder` (defaults: the paper's base model)."""

  src_vocab_size: int
  tgt_vocab_size: int
  d_model: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  d_ff: int = 2048
  dropout_rate: float = 0.1  # on embeddings and every sub-layer output
  max_len: int = 256  # longest source/target sequence (positional tables, decode cache)
  positional: str = "sinusoidal"  # 'sinusoidal' | 'learned' | 'rope'
  # Every attention setting (score, weighting, window, RoPE, dropout, implementation, ...);
  # cross-attention uses the same settings without RoPE.
  attention: AttentionConfig = AttentionConfig()
  norm: str = "post"  # 'post' (paper) | 'pre'
  share_embeddings: bool = False  # one embedding table for source and target
  tie_output_embedding: bool = True  # logits = y · E_tgtᵀ
  # Compute dtype 'float32' | 'bfloat16' (parameters, softmax, LayerNorm statistics and the
  # logits stay float32).
  dtype: str = "float32"
  scan_layers: bool = False  # each stack as one nn.scan'ned layer (compile time flat in depth)
  remat: str = "none"  # 'none' | 'full' | 'dots_saveable' | 'dots_with_no_batch_dims_saveable'
  pad_id: int = 0  # padding token id (masked in attention)
  # 'transformer' (Vaswani et al. 2017) | 'rnn' (Bahdanau et al. 2015: a bidirectional RNN
  # encoder and an RNN decoder attending with `attention`; transformer/rnn.py, which says which
  # fields it reads: not num_heads, d_ff, positional, norm).
  architecture: str = "transformer"
  rnn_cell: str = "gru"  # architecture='rnn': 'gru' (nn.GRUCell) | 'lstm' (nn.OptimizedLSTMCell)

  def __post_init__(self):
    name = "EncoderDecoderConfig"
    checks.choice(name, "architecture", self.architecture, ARCHITECTURES)
    checks.choice(name, "rnn_cell", self.rnn_cell, RNN_CELLS)
    if self.architecture == "rnn":  # first: its messages name the field the RNN needs
      _check_rnn(name, self)
    check_model_config(name, self, ("sinusoidal", "learned", "rope"))
    checks.at_least(
        name,
        self,
        ("src_vocab_size", "tgt_vocab_size", "num_encoder_layers", "num_decoder_layers", "max_len"),
    )
    if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
      raise ValueError(
          f"{name}: share_embeddings=True needs one vocabulary, got src_vocab_size="
          f"{self.src_vocab_size} and tgt_vocab_size={self.tgt_vocab_size}."
      )
    if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
      raise ValueError(
          f"{name}: pad_id={self.pad_id} is outside the vocabularies "
          f"(src {self.src_vocab_size}, tgt {self.tgt_vocab_size})."
      )

  def block_config(self) -> BlockConfig:
    return common.block_config(self, self.max_len)


def _check_rnn(name: str, cfg: EncoderDecoderConfig) -> None:
  """What architecture='rnn' needs, checked before the fields it shares with the Transformer
  (which still apply: e.g. d_model divisible by num_heads, so the rnn config sets num_heads=1)."""
  if cfg.d_model % 2:
    raise ValueError(
        f"{name}: d_model={cfg.d_model} must be even for architecture='rnn' (the bidirectional "
        "encoder has d_model/2 units per direction)."
    )
  if cfg.scan_layers or cfg.remat != "none":
    raise ValueError(
        f"{name}: scan_layers={cfg.scan_layers} and remat={cfg.remat!r} apply to "
        "architecture='transformer' only."
    )
  rope = AttentionConfig.of(cfg.attention).rope  # a dict until check_model_config converts it
  if rope or cfg.positional == "rope":
    raise ValueError(
        f"{name}: positional={cfg.positional!r} / attention.rope={rope}: "
        "architecture='rnn' has no positions to rotate."
    )


class EncoderDecoder(nn.Module):
  """The Transformer of Vaswani et al. 2017: `__call__(src_ids, tgt_in_ids) -> logits`.

  Token ids are int [batch, len] with `pad_id` padding; logits are float32 [b, t, tgt_vocab].

  Incremental decoding (one target token per call, used by greedy/beam search):

      model = EncoderDecoder(cfg)
      cache = model.init_cache(batch_size, max_decode_len)   # the 'cache' collection (zeros)
      memory = model.apply({'params': params}, src_ids, method=EncoderDecoder.encode)
      for t in range(max_decode_len):
          logits, mutated = model.apply(
              {'params': params, 'cache': cache}, tokens[:, None], memory, src_ids,
              decode=True, method=EncoderDecoder.decode, mutable=['cache'])
          cache = mutated['cache']            # logits: [batch, 1, tgt_vocab]
          tokens = ...                        # choose the next token from logits[:, 0]

  Cache leaves are key/value arrays ('cached_key'/'cached_value': [batch, heads,
  max_decode_len, d_k], with `scan_layers` [num_layers, batch, ...]) or int32 positions of the
  next token ('cache_index': scalars, [num_layers] when scanned). For beam search, gather the
  batch axis of the key/value arrays (`decoding.kv_cache_batch_axes` says which axis) and leave
  the indices alone; `memory`/`src_ids` are expanded the same way. Step t
  must receive token t of `tgt_in_ids` (the first is BOS); calls beyond max_decode_len are
  not checked inside jit, so keep the loop within it.
  """

  config: EncoderDecoderConfig

  def setup(self):
    cfg = self.config
    dtype = DTYPES[cfg.dtype]
    self._setup_embeddings()
    self.src_pos = positional_layer(cfg.positional, cfg.max_len)
    self.tgt_pos = positional_layer(cfg.positional, cfg.max_len)
    self.dropout = nn.Dropout(cfg.dropout_rate)
    stack = dict(scan=cfg.scan_layers, remat=cfg.remat)
    self.encoder = Encoder(cfg.block_config(), cfg.num_encoder_layers, **stack)
    self.decoder = Decoder(cfg.block_config(), cfg.num_decoder_layers, **stack)
    if not cfg.tie_output_embedding:
      self.output_proj = nn.Dense(cfg.tgt_vocab_size, dtype=dtype)

  def _setup_embeddings(self) -> None:
    """(In setup) 'embed', or 'src_embed' and 'tgt_embed': N(0, 1/d_model) tables."""
    cfg = self.config
    embed = lambda vocab: nn.Embed(  # noqa: E731
        vocab,
        cfg.d_model,
        dtype=DTYPES[cfg.dtype],
        embedding_init=nn.initializers.normal(stddev=cfg.d_model**-0.5),
    )
    if cfg.share_embeddings:
      self.embed = embed(cfg.src_vocab_size)
    else:
      self.src_embed = embed(cfg.src_vocab_size)
      self.tgt_embed = embed(cfg.tgt_vocab_size)

  def _tables(self) -> tuple[nn.Embed, nn.Embed]:
    if self.config.share_embeddings:
      return self.embed, self.embed
    return self.src_embed, self.tgt_embed

  def _check_decode_inputs(self, tgt_in_ids: Array, memory: Array, src_ids: Array) -> None:
    check_ids(tgt_in_ids, "tgt_in_ids", self.config.max_len)
    if (
        memory.ndim != 3
        or memory.shape[:2] != src_ids.shape
        or memory.shape[0] != tgt_in_ids.shape[0]
    ):
      raise ValueError(
          f"decode: memory {memory.shape} must be [batch, src_len, d_model] matching "
          f"src_ids {src_ids.shape} and tgt_in_ids {tgt_in_ids.shape}."
      )

  def encode(self, src_ids: Array, *, train: bool = False) -> Array:
    """src_ids [b, s] -> memory [b, s, d_model]."""
    cfg = self.config
    check_ids(src_ids, "src_ids", cfg.max_len)
    x = self._tables()[0](src_ids) * jnp.sqrt(cfg.d_model).astype(DTYPES[cfg.dtype])
    if self.src_pos is not None:
      x = self.src_pos(x)
    x = self.dropout(x, deterministic=not train)
    mask = padding_mask(ids=src_ids, pad_id=cfg.pad_id)  # [b, 1, 1, s]
    return self.encoder(x, mask, deterministic=not train)

  def decode(
      self,
      tgt_in_ids: Array,
      memory: Array,
      src_ids: Array,
      *,
      train: bool = False,
      decode: bool = False,
  ) -> Array:
    """tgt_in_ids [b, t] (BOS-shifted), memory [b, s, d], src_ids [b, s] -> logits [b, t, V].

    decode=True: one token per call ([b, 1]) with the 'cache' collection (class docstring; the
    RNN subclass continues from the recurrent state it keeps there). The decoder's output
    (`_decoder_output`, which a subclass overrides) goes through the output projection: the
    target embedding's transpose when tied, else 'output_proj'.
    """
    self._check_decode_inputs(tgt_in_ids, memory, src_ids)
    cross_mask = padding_mask(ids=src_ids, pad_id=self.config.pad_id)  # [b, 1, 1, s]
    y = self._decoder_output(tgt_in_ids, memory, cross_mask, train, decode)  # [b, t, d]
    if self.config.tie_output_embedding:
      logits = self._tables()[1].attend(y)  # y · Eᵀ
    else:
      logits = self.output_proj(y)
    return logits.astype(jnp.float32)

  def _decoder_output(
      self, tgt_in_ids: Array, memory: Array, cross_mask: Array, train: bool, decode: bool
  ) -> Array:
    """The Transformer decoder's output [b, t, d_model] for the embedded target tokens."""
    cfg = self.config
    y = self._tables()[1](tgt_in_ids) * jnp.sqrt(cfg.d_model).astype(DTYPES[cfg.dtype])
    if self.tgt_pos is not None:
      y = self.tgt_pos(y, decode=decode)
    y = self.dropout(y, deterministic=not train)
    return self.decoder(y, memory, None, cross_mask, deterministic=not train, decode=decode)

  def __call__(self, src_ids: Array, tgt_in_ids: Array, *, train: bool = False) -> Array:
    """Teacher-forced logits float32 [b, t, tgt_vocab]."""
    memory = self.encode(src_ids, train=train)
    return self.decode(tgt_in_ids, memory, src_ids, train=train)

  @nn.nowrap
  def init_cache(self, batch_size: int, max_decode_len: int) -> dict:
    """An empty decode cache (the 'cache' collection) for `max_decode_len` target tokens.

    Call on the unbound model (outside `apply`). No parameters are needed: the shapes
    come from `jax.eval_shape`, every leaf starts at zero. max_decode_len > max_len
    raises a ValueError.
    """
    model = type(self)(self.config, parent=None)  # (or the RNN subclass, transformer/rnn.py)
    src = jnp.ones((batch_size, 1), jnp.int32)
    tgt = jnp.ones((batch_size, max_decode_len), jnp.int32)

    def init_fn(m: "EncoderDecoder", src_ids: Array, tgt_ids: Array) -> Array:
      return m.decode(tgt_ids, m.encode(src_ids), src_ids, decode=True)

    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), src, tgt, method=init_fn))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])
