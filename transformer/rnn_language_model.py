"""The recurrent language model: stacked GRU / LSTM layers over token embeddings.

Selected by `LanguageModelConfig(architecture="rnn", rnn_cell="gru" | "lstm")`;
`language_model(cfg)` builds the model a config names. It reads vocab_size, d_model, num_layers,
dropout_rate, max_len, tie_output_embedding, dtype and pad_id (not num_heads, d_ff, positional,
norm, attention: an RNN has no attention and no positions). The cells are flax.linen's
(`nn.GRUCell`, `nn.OptimizedLSTMCell`, made by `transformer.rnn.make_cell`), run by `nn.RNN`.

    x_0 = dropout(E ids · sqrt(d_model))            [b, t, d]   'embed', as in LanguageModel
    x_l = dropout(RNN_l(x_{l-1}))                   [b, t, d]   'layer_l', l = 1 .. num_layers
    logits = x_L Eᵀ (tied) or W x_L ('output_proj')  [b, t, V]   float32

(dropout between layers, not on the recurrent connections: Zaremba et al. 2014). Logits at
position i depend only on ids[:, :i + 1]; right padding never reaches earlier positions.

Incremental decoding has LanguageModel's interface (`init_cache`, `apply(..., decode=True,
mutable=['cache'])`), so `transformer.sampling.language_model_sample` runs it unchanged: the
'cache' collection holds 'recurrent_state', a tuple of every layer's carry ([b, d] for a GRU,
(c, h) for an LSTM), zero at the start as in the full pass; each call continues from it over
the tokens it is given, so feeding ids one at a time gives the full pass's logits.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer.decoding import RECURRENT_STATE
from transformer.language_model import LanguageModel, LanguageModelConfig
from transformer.rnn import make_cell

Array = jnp.ndarray


def language_model(config: LanguageModelConfig) -> nn.Module:
  """The model `config.architecture` names: `LanguageModel` (the Transformer) or
  `RNNLanguageModel`."""
  if config.architecture == "rnn":
    return RNNLanguageModel(config)
  return LanguageModel(config)


class RNNLanguageModel(LanguageModel):
  """`__call__(ids [b, t] int, train=False, decode=False) -> logits float32 [b, t, vocab]`:
  LanguageModel's embedding, output layer and `init_cache`, recurrent layers between them."""

  def _hidden(self, x: Array, train: bool, decode: bool) -> Array:
    cfg = self.config
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)
    cells = [
        make_cell(cfg.rnn_cell, cfg.d_model, x.dtype, parent=None) for _ in range(cfg.num_layers)
    ]
    state = None
    if decode:  # the carries of the previous call; zeros (as nn.RNN starts) before the first
      zeros = tuple(c.initialize_carry(jax.random.key(0), x[:, 0].shape) for c in cells)
      state = self.variable("cache", RECURRENT_STATE, lambda: zeros)
    carries = []
    for layer, cell in enumerate(cells):
      rnn = nn.RNN(cell, return_carry=True, name=f"layer_{layer}")
      carry, x = rnn(x, initial_carry=None if state is None else state.value[layer])
      carries.append(carry)
      x = nn.Dropout(cfg.dropout_rate)(x, deterministic=not train)  # [b, t, d]
    if state is not None and not self.is_initializing():
      state.value = tuple(carries)
    return x
