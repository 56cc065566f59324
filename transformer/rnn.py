"""The recurrent baseline: an RNN encoder-decoder with attention (Bahdanau et al. 2015).

Selected by `EncoderDecoderConfig(architecture="rnn", rnn_cell="gru" | "lstm")`, checked there;
`encoder_decoder(cfg)` below builds the model a config names. `RNNEncoderDecoder` subclasses
`models.EncoderDecoder` (embeddings, input checks, `init_cache`) and reads the config's d_model,
num_encoder_layers, num_decoder_layers, dropout_rate, max_len, attention, share_embeddings,
tie_output_embedding, dtype and pad_id (not num_heads, d_ff, positional, norm). The cells are
flax.linen's (`nn.GRUCell`, `nn.OptimizedLSTMCell`), run by `nn.RNN` / `nn.Bidirectional` /
`nn.scan`.

Encoder: embeddings E x · sqrt(d_model) -> `num_encoder_layers` bidirectional RNNs of d_model/2
units per direction (outputs concatenated; padding skipped through `seq_lengths`, sources are
right-padded) -> annotations h [b, s, d_model].

Decoder, target position i (token y_{i-1} in, logits for y_i out):

    a_i = weigh(e(s_{i-1}, h_j))          attention of the previous state over the annotations
    c_i = Σ_j a_ij h_j                    the context [b, d_model]
    s_i = RNN(s_{i-1}, [E y_{i-1}; c_i])  bottom layer 'layer_0'
    s_i^l = RNN^l(s_{i-1}^l, s_i^{l-1})   layers 'layer_l', 0 < l < num_decoder_layers (nn.RNN)
    o_i = tanh(W_o [s_i^top; c_i; E y_{i-1}])   'deep_output' (Bahdanau's maxout -> tanh)
    logits_i = o_i E_tgtᵀ (tie_output_embedding) or W o_i ('output_proj')

with s_0^l = tanh(W_s^l h←_1) ('init_state'), h←_1 the backward half of the first annotation.
The attention is the library's `attend(q, k, v, config.attention, ...)` with one head:
q = s_{i-1} [b, 1, 1, d], k = v = h [b, 1, s, d], so every score function and weighting works
(Bahdanau: score='additive'; Luong: 'general', 'dot'; weighting soft | hard | local, the local
window centred on min(i, last source token) or predicted from s_{i-1}).

Attention weights are sown where a one-layer Transformer decoder sows its cross-attention,
`intermediates['decoder']['layer_0']['cross_attention']['attention_weights']`, [b, 1, t, s],
so `stack_layout.attention_weights(..., 'decoder', 'cross_attention')` and the plots read both.

Decoding has the interface of `models.EncoderDecoder` (`encode`, `decode(..., decode=True)`,
the inherited `init_cache`), so `transformer.decoding`'s greedy and beam search run it unchanged.
The 'cache' collection holds 'recurrent_state' (a tuple of each decoder layer's carry: [b, d] for
a GRU, (c, h) for an LSTM; beam search reorders their rows) and 'cache_index' (int32, the
position of the next token; at 0 the state starts from s_0). A call with decode=True continues
from the cached state over the tokens it is given, so the step-by-step logits equal the
teacher-forced ones.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer import checks
from transformer.attention import SCORE_PARAMS, init_score_params
from transformer.attention_config import AttentionConfig
from transformer.common import DTYPES, check_ids
from transformer.decoding import RECURRENT_STATE  # the decode cache's variable of the carries
from transformer.masks import local_m_centers
from transformer.models import RNN_CELLS, EncoderDecoder, EncoderDecoderConfig
from transformer.multihead import CenterPredictor, attend_in_module

Array = jnp.ndarray
Carry = Any


def encoder_decoder(config: EncoderDecoderConfig) -> EncoderDecoder:
  """The model `config.architecture` names: `EncoderDecoder` (the Transformer) or
  `RNNEncoderDecoder`."""
  if config.architecture == "rnn":
    return RNNEncoderDecoder(config)
  return EncoderDecoder(config)


def make_cell(kind: str, features: int, dtype: Any, **module_kwargs: Any) -> nn.RNNCellBase:
  """A flax.linen recurrent cell: 'gru' (nn.GRUCell) or 'lstm' (nn.OptimizedLSTMCell).
  `module_kwargs`: name=..., or parent=None for a cell that an nn.RNN owns (params 'cell')."""
  checks.choice("make_cell", "rnn_cell", kind, RNN_CELLS)
  if kind == "gru":
    return nn.GRUCell(features, dtype=dtype, **module_kwargs)
  return nn.OptimizedLSTMCell(features, dtype=dtype, **module_kwargs)


def make_rnn(kind: str, features: int, dtype: Any, **module_kwargs: Any) -> nn.RNN:
  """nn.RNN over a `make_cell` cell (its params under 'cell')."""
  return nn.RNN(make_cell(kind, features, dtype, parent=None), **module_kwargs)


def hidden_state(kind: str, carry: Carry) -> Array:
  """The output state h of a cell's carry (a GRU's carry is h; an LSTM's is (c, h))."""
  return carry if kind == "gru" else carry[1]


def carry_from_hidden(kind: str, h: Array) -> Carry:
  """A carry whose output state is `h` (an LSTM's memory cell c starts at zero)."""
  return h if kind == "gru" else (jnp.zeros_like(h), h)


class RNNEncoder(nn.Module):
  """`(x [b, s, d] embedded source, lengths [b], deterministic) -> annotations [b, s, d]`:
  layers 'layer_l' of nn.Bidirectional RNNs, d/2 units per direction, dropout between them."""

  config: EncoderDecoderConfig

  @nn.compact
  def __call__(self, x: Array, lengths: Array, *, deterministic: bool) -> Array:
    cfg = self.config
    dtype = DTYPES[cfg.dtype]
    for l in range(cfg.num_encoder_layers):
      if l:
        x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
      rnns = [make_rnn(cfg.rnn_cell, cfg.d_model // 2, dtype, parent=None) for _ in range(2)]
      x = nn.Bidirectional(*rnns, name=f"layer_{l}")(x, seq_lengths=lengths)
    return x


class RecurrentAttention(nn.Module):
  """Single-head attention of a decoder state over the encoder annotations, by `attend`.

  `(s [b, d], memory [b, k_len, d], mask [b, 1, 1, k_len], t [] int) -> context [b, d]`;
  t is the target position (the local window's centre min(t, last source token)). Params:
  'score_params' of a parametric score, 'centers' (CenterPredictor) for centers='predicted'.
  Sows the weights [b, 1, k_len] (before dropout) when 'intermediates' is mutable.
  """

  config: AttentionConfig
  max_len: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self, s: Array, memory: Array, mask: Array, t: Array, *, deterministic: bool = True
  ) -> Array:
    cfg = self.config
    k_len, d = memory.shape[1], memory.shape[-1]
    if s.shape[-1] != d:
      raise ValueError(f"RecurrentAttention: state width {s.shape[-1]} != annotation width {d}.")
    q = s[:, None, None, :].astype(self.dtype)  # [b, 1, 1, d]
    k = v = memory[:, None].astype(self.dtype)  # [b, 1, k_len, d]
    score_params = None
    if SCORE_PARAMS[cfg.score]:
      score_params = self.param(
          "score_params",
          lambda rng: init_score_params(cfg.score, rng, 1, d, d_a=cfg.d_a, max_len=self.max_len),
      )
    centers = None
    if cfg.weighting == "local" and cfg.centers == "predicted":
      last = jnp.full((1,), k_len - 1, jnp.float32)
      centers = CenterPredictor(dtype=self.dtype, name="centers")(q[:, 0], last)  # [b, 1]
    elif cfg.weighting == "local":
      centers = local_m_centers(jnp.asarray(t, jnp.float32)[None], mask, k_len)  # [b, 1]
    out, weights = attend_in_module(
        self,
        q,
        k,
        v,
        cfg,
        deterministic=deterministic,
        mask=mask,
        score_params=score_params,
        centers=centers,
    )  # out [b, 1, 1, d], weights [b, 1, 1, k_len] or None
    if weights is not None:
      self.sow("intermediates", "attention_weights", weights[:, :, 0])
    return out[:, 0, 0]


class AttentionRNNStep(nn.Module):
  """One position of the bottom decoder layer: attend with s_{i-1}, then the cell.

  `(carry, y [b, d], t [] int, memory, mask) -> (carry, (s_i [b, d], c_i [b, d]))`;
  `RNNDecoder` scans it over the target positions."""

  config: EncoderDecoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(
      self, carry: Carry, y: Array, t: Array, memory: Array, mask: Array
  ) -> tuple[Carry, tuple[Array, Array]]:
    cfg = self.config
    dtype = DTYPES[cfg.dtype]
    attention = RecurrentAttention(cfg.attention, cfg.max_len, dtype, name="cross_attention")
    c = attention(
        hidden_state(cfg.rnn_cell, carry), memory, mask, t, deterministic=self.deterministic
    )
    cell = make_cell(cfg.rnn_cell, cfg.d_model, dtype, name="cell")
    carry, s = cell(carry, jnp.concatenate([y, c.astype(y.dtype)], axis=-1))
    return carry, (s, c)


class RNNDecoder(nn.Module):
  """The decoder's recurrent layers: `(y [b, t, d] embedded tokens, memory [b, s, d], mask,
  deterministic, decode) -> (s^top [b, t, d], c [b, t, d])` (module docstring)."""

  config: EncoderDecoderConfig

  @nn.compact
  def __call__(
      self, y: Array, memory: Array, mask: Array, *, deterministic: bool, decode: bool
  ) -> tuple[Array, Array]:
    cfg = self.config
    kind, d, num_layers = cfg.rnn_cell, cfg.d_model, cfg.num_decoder_layers
    dtype = DTYPES[cfg.dtype]
    # s_0^l = tanh(W_s^l h←_1): the backward RNN's annotation of the first source token.
    h_back = memory[:, 0, d // 2 :]  # [b, d/2]
    s0 = jnp.tanh(nn.Dense(num_layers * d, dtype=dtype, name="init_state")(h_back))
    s0 = s0.astype(jnp.float32).reshape(memory.shape[0], num_layers, d)
    carries = tuple(carry_from_hidden(kind, s0[:, l]) for l in range(num_layers))

    offset = jnp.array(0, jnp.int32)
    if decode:
      stepping = self.has_variable("cache", RECURRENT_STATE)
      state = self.variable("cache", RECURRENT_STATE, lambda: carries)
      index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if stepping:
        offset = index.value
        carries = jax.tree.map(lambda a, b: jnp.where(offset == 0, a, b), carries, state.value)

    scan = nn.scan(
        AttentionRNNStep,
        variable_broadcast="params",
        variable_axes={"intermediates": 2},  # per-step weights [b, 1, s] -> [b, 1, t, s]
        split_rngs={"params": False, "dropout": True},
        in_axes=(1, 0, nn.broadcast, nn.broadcast),
        out_axes=1,
    )
    positions = offset + jnp.arange(y.shape[1], dtype=jnp.int32)
    carry, (x, c) = scan(cfg, deterministic, name="layer_0")(carries[0], y, positions, memory, mask)
    new_carries = [carry]
    for l in range(1, num_layers):
      x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
      rnn = make_rnn(kind, d, dtype, return_carry=True, name=f"layer_{l}")
      carry, x = rnn(x, initial_carry=carries[l])
      new_carries.append(carry)

    if decode and stepping:
      state.value = tuple(new_carries)
      index.value = offset + y.shape[1]
    return x, c


class RNNEncoderDecoder(EncoderDecoder):
  """`__call__(src_ids, tgt_in_ids) -> logits` float32 [b, t, tgt_vocab]: `EncoderDecoder`'s
  interface (`encode`, `decode`, `init_cache`, embeddings 'embed' or 'src_embed'/'tgt_embed')
  with the recurrent encoder and decoder of the module docstring."""

  def setup(self):
    cfg = self.config
    self._setup_embeddings()
    self.dropout = nn.Dropout(cfg.dropout_rate)
    self.encoder = RNNEncoder(cfg)
    self.decoder = RNNDecoder(cfg)
    self.deep_output = nn.Dense(cfg.d_model, dtype=DTYPES[cfg.dtype])
    if not cfg.tie_output_embedding:
      self.output_proj = nn.Dense(cfg.tgt_vocab_size, dtype=DTYPES[cfg.dtype])

  def _embed(self, table: nn.Embed, ids: Array, train: bool) -> Array:
    x = table(ids) * jnp.sqrt(self.config.d_model).astype(DTYPES[self.config.dtype])
    return self.dropout(x, deterministic=not train)

  def encode(self, src_ids: Array, *, train: bool = False) -> Array:
    """src_ids [b, s] -> annotations [b, s, d_model] (forward half, backward half)."""
    cfg = self.config
    check_ids(src_ids, "src_ids", cfg.max_len)
    x = self._embed(self._tables()[0], src_ids, train)
    return self.encoder(x, (src_ids != cfg.pad_id).sum(axis=-1), deterministic=not train)

  def _decoder_output(
      self, tgt_in_ids: Array, memory: Array, cross_mask: Array, train: bool, decode: bool
  ) -> Array:
    """The deep output o_i = tanh(W [s_i; c_i; y_{i-1}]) [b, t, d_model], dropped out, which
    `decode` projects to the logits; decode=True continues from the 'cache' collection's state
    (module docstring)."""
    y = self._embed(self._tables()[1], tgt_in_ids, train)  # [b, t, d]
    s, c = self.decoder(y, memory, cross_mask, deterministic=not train, decode=decode)
    o = jnp.tanh(self.deep_output(jnp.concatenate([s.astype(y.dtype), c.astype(y.dtype), y], -1)))
    return self.dropout(o, deterministic=not train)
