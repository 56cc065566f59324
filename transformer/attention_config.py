"""`AttentionConfig`: every setting of an attention layer, validated in one place.

One frozen dataclass is shared by `MultiHeadAttention` (multihead.py), `BlockConfig`
(blocks.py) and the model configs (models.py, classifier.py, field `attention`), so a knob
added here is reachable everywhere, including from the command line of every experiment
(`--config.model.attention.weighting=local --config.model.attention.window=3`).

    AttentionConfig()                                            # scaled dot-product, softmax
    AttentionConfig(score="additive", d_a=32)                   # Bahdanau
    AttentionConfig(weighting="local", window=3, centers="predicted", gaussian=True)  # local-p
    AttentionConfig(implementation="chunked", query_chunk_size=256)

The config is the one place attention settings are checked: the functions and modules that
take one (`attend`, `chunked_attention`, `MultiHeadAttention`, ...) trust its values. The model
configs (models.py, classifier.py, language_model.py) accept a plain dict of its fields (e.g.
from a ConfigDict) and convert it once with `AttentionConfig.of({...})`.

The names below are the settings' allowed values; transformer/attention.py implements the score
functions and weightings under the same names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Optional, Union

from transformer import checks
from transformer.positional import ROPE_BASE

SCORES = ("dot", "scaled_dot", "general", "additive", "location")
WEIGHTINGS = ("soft", "hard", "local")
CENTERS = ("query", "predicted")
# See transformer/attention_impl.py.
IMPLEMENTATIONS = ("auto", "reference", "fused", "chunked")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
  """Settings of one attention layer (the structural ones, heads/widths/causality, live on the
  module). Bad values raise a ValueError naming the field and the allowed values."""

  # Score function e(q, k): 'dot' | 'scaled_dot' | 'general' | 'additive' | 'location'.
  score: str = "scaled_dot"
  # Scores -> weights: 'soft' (softmax) | 'hard' (one-hot argmax) | 'local' (softmax in a window).
  weighting: str = "soft"
  # Half-width of the local window (weighting='local'); keys within ±window of the centre.
  window: Optional[int] = None
  # Centre of the local window: 'query' (the query's own position, Luong's local-m; in a
  # decoder's cross-attention clamped to the last real source token) or
  # 'predicted' (local-p: p_t = last_visible_key · sigmoid(v_pᵀ tanh(W_p x_t)), learned).
  centers: str = "query"
  # Multiply local weights by exp(-(j - p_t)² / (2 (window/2)²)) (local-p; trains 'predicted').
  gaussian: bool = False
  # Hard weighting: one-hot forward, softmax gradient (else the argmax has no gradient).
  straight_through: bool = True
  # Hidden width of the additive score (None = d_k).
  d_a: Optional[int] = None
  # Dropout on the attention weights while training.
  dropout_rate: float = 0.0
  # Rotary position embeddings on q and k of self-attention (models also set it for
  # positional='rope'); never used by cross-attention.
  rope: bool = False
  # RoPE base b: θ_i = b^(-2i/d_k).
  rope_base: float = ROPE_BASE
  # 'auto' (fused where it applies and no weights are collected) | 'reference' (the pure
  # functions of transformer.attention) | 'fused' (jax.nn.dot_product_attention) | 'chunked'
  # (memory-efficient, blocks of queries/keys); see transformer/attention_impl.py.
  implementation: str = "auto"
  # Block sizes of implementation='chunked'.
  query_chunk_size: int = 512
  key_chunk_size: int = 512

  def __post_init__(self):
    name = "AttentionConfig"
    checks.choice(name, "score", self.score, sorted(SCORES))
    checks.choice(name, "weighting", self.weighting, WEIGHTINGS)
    checks.choice(name, "centers", self.centers, CENTERS)
    checks.choice(name, "implementation", self.implementation, IMPLEMENTATIONS)
    if self.weighting == "local" and (self.window is None or self.window < 0):
      raise ValueError(f"{name}: weighting='local' needs window >= 0, got window={self.window}.")
    if self.weighting != "local" and (self.centers != "query" or self.gaussian):
      raise ValueError(
          f"{name}: centers={self.centers!r} and gaussian={self.gaussian} apply to "
          f"weighting='local' only, got weighting={self.weighting!r}."
      )
    if self.centers == "predicted" and not self.gaussian:
      raise ValueError(
          f"{name}: centers='predicted' needs gaussian=True (the window edge has no gradient; "
          "the Gaussian is what trains the predicted centres)."
      )
    if self.d_a is not None and self.d_a < 1:
      raise ValueError(f"{name}: d_a must be >= 1 (or None = d_k), got {self.d_a}.")
    checks.fraction(name, "dropout_rate", self.dropout_rate)
    if not (math.isfinite(self.rope_base) and self.rope_base > 1.0):
      raise ValueError(f"{name}: rope_base must be a finite number > 1, got {self.rope_base}.")
    checks.at_least(name, self, ("query_chunk_size", "key_chunk_size"))

  @classmethod
  def of(cls, value: Union["AttentionConfig", Mapping[str, Any], None]) -> "AttentionConfig":
    """An AttentionConfig from itself, a mapping of its fields, or None (the defaults)."""
    if value is None:
      return cls()
    if isinstance(value, cls):
      return value
    if isinstance(value, Mapping):
      unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
      if unknown:
        raise ValueError(
            f"AttentionConfig: unknown field(s) {unknown}; known: "
            f"{[f.name for f in dataclasses.fields(cls)]}."
        )
      return cls(**value)
    raise TypeError(f"AttentionConfig expected, got {type(value).__name__}: {value!r}.")

  def replace(self, **changes: Any) -> "AttentionConfig":
    return dataclasses.replace(self, **changes)
