"""Label-smoothed cross-entropy over target tokens, padding masked."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def token_losses(
    logits: jax.Array, labels: jax.Array, label_smoothing: float
) -> tuple[jax.Array, jax.Array]:
  """Per-token smoothed loss and plain negative log-likelihood.

  logits [batch, len, vocab] (float32), labels [batch, len] int. The smoothed target is
  (1 - eps) * one_hot + eps / vocab (Szegedy et al. 2016; Vaswani et al. 2017, eps=0.1).
  Returns (smoothed_loss, nll), both [batch, len].
  """
  vocab = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  one_hot = jax.nn.one_hot(labels, vocab, dtype=jnp.float32)
  smoothed = optax.smooth_labels(one_hot, label_smoothing) if label_smoothing else one_hot
  loss = optax.softmax_cross_entropy(logits, smoothed)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return loss, nll


def translation_loss(
    logits: jax.Array, labels: jax.Array, weight: jax.Array, label_smoothing: float, pad_id: int = 0
):
  """Mean smoothed loss over real target tokens and (sum, count) metrics.

  weight [batch]: 1 for real pairs, 0 for padding rows. Tokens equal to `pad_id` count
  nowhere. Metrics: loss (smoothed), nll (-> perplexity = exp(nll)), accuracy (token).
  """
  mask = (labels != pad_id).astype(jnp.float32) * weight[:, None].astype(jnp.float32)
  loss, nll = token_losses(logits, labels, label_smoothing)
  num_tokens = mask.sum()
  mean_loss = (loss * mask).sum() / jnp.maximum(num_tokens, 1.0)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  metrics = {
      'loss': ((loss * mask).sum(), num_tokens),
      'nll': ((nll * mask).sum(), num_tokens),
      'token_accuracy': ((correct * mask).sum(), num_tokens),
  }
  return mean_loss, metrics
