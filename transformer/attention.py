"""Attention as pure functions (jax.numpy only, no Flax).

Shapes follow one convention throughout:

    q  [batch, heads, q_len, d_k]      queries
    k  [batch, heads, k_len, d_k]      keys
    v  [batch, heads, k_len, d_v]      values
    scores, weights, mask  [batch, heads, q_len, k_len]   (masks broadcast)

Attention is three steps, each swappable:

1. a *score function* e(q, k) -> scores (`SCORE_FUNCTIONS`);
2. a *weighting* of the scores into attention weights a (`weigh`): soft, hard, local;
3. the weighted sum of values, a · v.

Parametric score functions (general, additive, location) take their parameters as explicit
arguments; `init_score_params` makes them, and Flax modules simply hold them.

`attention(q, k, v, score=..., weighting=..., ...)` runs the three steps for keyword settings
(the fields of `AttentionConfig`);
`reference_attention(q, k, v, cfg)` for an `AttentionConfig`, which validated the settings (the
names of score functions and weightings here are those it allows). The functions below trust a
name they are given.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from transformer.attention_config import AttentionConfig
from transformer.masks import as_4d_mask, combine_masks, local_mask

Array = jnp.ndarray

# A large negative number used instead of -inf so that fully-masked rows never produce NaN.
_NEG = -1e30


# --------------------------------------------------------------------------------------------
# 1. Score functions e(q, k): [b, h, q_len, d_k] x [b, h, k_len, d_k] -> [b, h, q_len, k_len]
# --------------------------------------------------------------------------------------------


def _check_qk(q: Array, k: Array, name: str, same_width: bool = True) -> None:
  if q.ndim != 4 or k.ndim != 4:
    raise ValueError(
        f"{name}: q and k must be [batch, heads, len, d], got q{q.shape} and k{k.shape}."
    )
  if q.shape[:2] != k.shape[:2]:
    raise ValueError(f"{name}: batch/heads of q {q.shape[:2]} and k {k.shape[:2]} differ.")
  if same_width and q.shape[-1] != k.shape[-1]:
    raise ValueError(f"{name}: query width d_q={q.shape[-1]} != key width d_k={k.shape[-1]}.")


def dot_scores(q: Array, k: Array) -> Array:
  """e(q, k) = q · k (Luong et al. 2015, "dot")."""
  _check_qk(q, k, "dot_scores")
  return jnp.einsum("bhqd,bhkd->bhqk", q, k)


def scaled_dot_scores(q: Array, k: Array) -> Array:
  """e(q, k) = q · k / sqrt(d_k) (Vaswani et al. 2017)."""
  _check_qk(q, k, "scaled_dot_scores")
  d_k = q.shape[-1]
  return jnp.einsum("bhqd,bhkd->bhqk", q / jnp.sqrt(d_k).astype(q.dtype), k)


def general_scores(q: Array, k: Array, w: Array) -> Array:
  """e(q, k) = qᵀ W k, bilinear (Luong et al. 2015, "general"). `w`: [heads, d_q, d_k]."""
  _check_qk(q, k, "general_scores", same_width=False)
  if w.shape != (q.shape[1], q.shape[-1], k.shape[-1]):
    raise ValueError(
        f"general_scores: W must be [heads, d_q, d_k] = "
        f"{(q.shape[1], q.shape[-1], k.shape[-1])}, got {w.shape}."
    )
  return jnp.einsum("bhqd,hde,bhke->bhqk", q, w.astype(q.dtype), k)


def additive_scores(q: Array, k: Array, w_q: Array, w_k: Array, v_a: Array) -> Array:
  """e(q, k) = v_aᵀ tanh(W_q q + W_k k) (Bahdanau et al. 2015, "concat" in Luong et al.).

  `w_q`: [heads, d_q, d_a], `w_k`: [heads, d_k, d_a], `v_a`: [heads, d_a].
  """
  _check_qk(q, k, "additive_scores", same_width=False)
  h = q.shape[1]
  if w_q.shape[:2] != (h, q.shape[-1]) or w_k.shape[:2] != (h, k.shape[-1]):
    raise ValueError(
        f"additive_scores: W_q must be [heads={h}, d_q={q.shape[-1]}, d_a] and W_k "
        f"[heads={h}, d_k={k.shape[-1]}, d_a]; got {w_q.shape} and {w_k.shape}."
    )
  if v_a.shape != (h, w_q.shape[-1]) or w_k.shape[-1] != w_q.shape[-1]:
    raise ValueError(
        f"additive_scores: attention width d_a disagrees: W_q {w_q.shape}, "
        f"W_k {w_k.shape}, v_a {v_a.shape}."
    )
  qa = jnp.einsum("bhqd,hda->bhqa", q, w_q.astype(q.dtype))  # [b, h, q_len, d_a]
  ka = jnp.einsum("bhkd,hda->bhka", k, w_k.astype(k.dtype))  # [b, h, k_len, d_a]
  hidden = jnp.tanh(qa[:, :, :, None, :] + ka[:, :, None, :, :])  # [b, h, q, k, d_a]
  return jnp.einsum("bhqka,ha->bhqk", hidden, v_a.astype(hidden.dtype))


def location_scores(q: Array, w: Array, k_len: int) -> Array:
  """e_t = W q_t over key positions, from the query alone (Luong et al. 2015, "location").

  `w`: [heads, d_q, max_len]; only the first `k_len` positions are used.
  """
  if q.ndim != 4:
    raise ValueError(f"location_scores: q must be [batch, heads, len, d], got {q.shape}.")
  if w.ndim != 3 or w.shape[:2] != (q.shape[1], q.shape[-1]):
    raise ValueError(
        f"location_scores: W must be [heads={q.shape[1]}, d_q={q.shape[-1]}, max_len], "
        f"got {w.shape}."
    )
  if k_len > w.shape[-1]:
    raise ValueError(f"location_scores: k_len={k_len} exceeds the supported max_len={w.shape[-1]}.")
  return jnp.einsum("bhqd,hdl->bhql", q, w[:, :, :k_len].astype(q.dtype))


SCORE_FUNCTIONS: Mapping[str, Callable[..., Array]] = {
    "dot": dot_scores,
    "scaled_dot": scaled_dot_scores,
    "general": general_scores,
    "additive": additive_scores,
    "location": location_scores,
}


# Score function -> names of its parameters, in the order of its arguments after (q, k).
SCORE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "dot": (),
    "scaled_dot": (),
    "general": ("w",),
    "additive": ("w_q", "w_k", "v_a"),
    "location": ("w",),
}


def compute_scores(
    score: str, q: Array, k: Array, params: Optional[Mapping[str, Array]] = None
) -> Array:
  """Dispatches to a score function by name with its explicit `params`."""
  params = dict(params or {})
  args = [_param(params, name, score) for name in SCORE_PARAMS[score]]
  if score == "location":  # e_t = W q_t: the keys give only their number
    _check_qk(q, k, "location_scores", same_width=False)
    return location_scores(q, *args, k.shape[2])
  return SCORE_FUNCTIONS[score](q, k, *args)


def _param(params: Mapping[str, Array], name: str, score: str) -> Array:
  if name not in params:
    raise ValueError(
        f"Score function {score!r} needs parameter {name!r}; got {sorted(params)}. "
        f"Use init_score_params({score!r}, ...)."
    )
  return params[name]


def init_score_params(
    score: str,
    rng: jax.Array,
    heads: int,
    d_k: int,
    *,
    d_a: Optional[int] = None,
    max_len: Optional[int] = None,
    dtype=jnp.float32,
) -> dict[str, Array]:
  """Initial parameters of a score function (empty for dot / scaled_dot).

  general: w [heads, d_k, d_k]; additive: w_q, w_k [heads, d_k, d_a], v_a [heads, d_a]
  (d_a defaults to d_k); location: w [heads, d_k, max_len]. Glorot-style scales.
  """
  if not SCORE_PARAMS[score]:  # dot, scaled_dot
    return {}
  if score == "general":
    return {"w": jax.random.normal(rng, (heads, d_k, d_k), dtype) / math.sqrt(d_k)}
  if score == "additive":
    d_a = d_a or d_k
    r1, r2, r3 = jax.random.split(rng, 3)
    return {
        "w_q": jax.random.normal(r1, (heads, d_k, d_a), dtype) / math.sqrt(d_k),
        "w_k": jax.random.normal(r2, (heads, d_k, d_a), dtype) / math.sqrt(d_k),
        "v_a": jax.random.normal(r3, (heads, d_a), dtype) / math.sqrt(d_a),
    }
  if not max_len:  # location
    raise ValueError("init_score_params('location') needs max_len (the longest key length).")
  return {"w": jax.random.normal(rng, (heads, d_k, max_len), dtype) / math.sqrt(d_k)}


# --------------------------------------------------------------------------------------------
# 2. Weightings: scores [b, h, q, k] (+ mask) -> weights [b, h, q, k], float32
# --------------------------------------------------------------------------------------------


def soft_weights(scores: Array, mask: Optional[Array] = None) -> Array:
  """Softmax over keys, computed in float32; masked keys get exactly 0.

  A query row whose keys are all masked gets all-zero weights (never NaN).
  """
  mask = as_4d_mask(mask, scores.shape)
  scores = scores.astype(jnp.float32)
  if mask is None:
    return jax.nn.softmax(scores, axis=-1)
  weights = jax.nn.softmax(jnp.where(mask, scores, _NEG), axis=-1)
  return jnp.where(mask, weights, 0.0)


def hard_weights(
    scores: Array, mask: Optional[Array] = None, straight_through: bool = False
) -> Array:
  """One-hot at the best-scoring unmasked key (argmax), float32.

  The argmax has no gradient; with `straight_through=True` the forward value is still
  one-hot, but gradients flow as if it were the softmax (straight-through estimator).
  Fully-masked rows are all zero.
  """
  mask = as_4d_mask(mask, scores.shape)
  scores32 = scores.astype(jnp.float32)
  masked = scores32 if mask is None else jnp.where(mask, scores32, _NEG)
  hard = jax.nn.one_hot(jnp.argmax(masked, axis=-1), scores.shape[-1], dtype=jnp.float32)
  if mask is not None:
    hard = jnp.where(mask, hard, 0.0)
  if straight_through:
    soft = soft_weights(scores, mask)
    hard = soft + jax.lax.stop_gradient(hard - soft)
  return hard


def local_weights(
    scores: Array,
    mask: Optional[Array] = None,
    *,
    window: int,
    centers: Optional[Array] = None,
    gaussian: bool = False,
) -> Array:
  """Softmax restricted to keys within ±`window` of a centre (Luong et al. 2015, local).

  `centers` ([q_len] or [batch, q_len]): aligned source positions p_t (local-p) or, by
  default, the query positions (local-m). With `gaussian=True` the weights are further
  multiplied by exp(-(j - p_t)² / (2σ²)), σ = window / 2, as in local-p.
  """
  q_len, k_len = scores.shape[-2:]
  local = local_mask(q_len, k_len, window, centers)  # [1|batch, 1, q, k]
  weights = soft_weights(scores, combine_masks(mask, local))
  if gaussian:
    c = (
        jnp.arange(q_len, dtype=jnp.float32)
        if centers is None
        else jnp.asarray(centers, jnp.float32)
    ).reshape((-1, 1, q_len, 1))
    j = jnp.arange(k_len, dtype=jnp.float32)
    sigma = max(window, 1) / 2.0
    weights = weights * jnp.exp(-((j - c) ** 2) / (2 * sigma**2))
  return weights


def weigh(
    scores: Array,
    cfg: AttentionConfig,
    mask: Optional[Array] = None,
    centers: Optional[Array] = None,
) -> Array:
  """Scores [b, h, q, k] -> weights [b, h, q, k] float32 by `cfg.weighting` (soft | hard | local)."""
  if cfg.weighting == "soft":
    return soft_weights(scores, mask)
  if cfg.weighting == "hard":
    return hard_weights(scores, mask, straight_through=cfg.straight_through)
  return local_weights(scores, mask, window=cfg.window, centers=centers, gaussian=cfg.gaussian)


def weight_dropout(weights: Array, rate: float, rng: jax.Array) -> Array:
  """Each weight kept with probability 1 - rate and scaled by 1 / (1 - rate), else 0."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, weights.shape)
  return jnp.where(keep, weights / (1.0 - rate), 0.0)


# --------------------------------------------------------------------------------------------
# 3. Attention
# --------------------------------------------------------------------------------------------


def reference_attention(
    q: Array,
    k: Array,
    v: Array,
    cfg: AttentionConfig,
    *,
    mask: Optional[Array] = None,
    score_params: Optional[Mapping[str, Array]] = None,
    centers: Optional[Array] = None,
    dropout_rng: Optional[jax.Array] = None,
) -> tuple[Array, Array]:
  """Attention of q over (k, v) with the settings `cfg`, by the full [q_len, k_len] matrices.

  Returns `(outputs [b, h, q_len, d_v], weights [b, h, q_len, k_len])`. `weights` are float32
  and are returned *before* dropout, so they can always be read out and plotted. Dropout (if
  `cfg.dropout_rate > 0` and a `dropout_rng` is given) is applied to the weights used for the
  output. `centers` ([q_len] or [b, q_len]): local-window centres (default: query positions).
  """
  if v.ndim != 4 or v.shape[:3] != k.shape[:3]:
    raise ValueError(
        f"attention: v must be [batch, heads, k_len, d_v] matching k{k.shape[:3]}, got {v.shape}."
    )
  scores = compute_scores(cfg.score, q, k, score_params)  # [b, h, q, k]
  weights = weigh(scores, cfg, mask, centers)
  used = weights
  if cfg.dropout_rate > 0.0 and dropout_rng is not None:
    used = weight_dropout(weights, cfg.dropout_rate, dropout_rng)
  outputs = jnp.einsum("bhqk,bhkd->bhqd", used.astype(v.dtype), v)
  return outputs, weights


def attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    mask: Optional[Array] = None,
    score_params: Optional[Mapping[str, Array]] = None,
    centers: Optional[Array] = None,
    dropout_rng: Optional[jax.Array] = None,
    **settings: Any,
) -> tuple[Array, Array]:
  """`reference_attention` with the settings as keywords: `AttentionConfig` fields (score,
  weighting, window, gaussian, straight_through, dropout_rate, ...), checked by it.

  Unlike the config, `straight_through` defaults to False here: hard weighting is the plain
  argmax, without gradient. The reference computation reads score, weighting, window, gaussian,
  straight_through and dropout_rate (`attend` runs the other implementations; RoPE is the
  module's). Returns `(outputs [b, h, q_len, d_v], weights [b, h, q_len, k_len])`,
  weights before dropout.
  """
  cfg = AttentionConfig.of({"straight_through": False, **settings})
  return reference_attention(
      q, k, v, cfg, mask=mask, score_params=score_params, centers=centers, dropout_rng=dropout_rng
  )
