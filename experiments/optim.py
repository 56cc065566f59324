"""Optimizers and learning-rate schedules from the config (optax).

Config fields (top level): optimizer ('adamw' | 'adam' | 'sgd'), learning_rate,
weight_decay, adam_b1, adam_b2, adam_eps, momentum (sgd), grad_clip_norm (0 = off),
schedule ('constant' | 'cosine' | 'noam'), warmup_steps, num_train_steps.

'noam' is the paper's schedule (Vaswani et al. 2017, eq. 3):
  lr(n) = learning_rate * d_model^-0.5 * min(n^-0.5, n * warmup_steps^-1.5), n = step + 1,
so learning_rate = 1.0 reproduces the paper; d_model is read from config.model.d_model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ('adamw', 'adam', 'sgd')
SCHEDULES = ('constant', 'cosine', 'noam')


def noam_schedule(learning_rate: float, d_model: int, warmup_steps: int) -> optax.Schedule:
  """The inverse-square-root schedule of "Attention Is All You Need"."""

  def schedule(step):
    n = jnp.asarray(step, jnp.float32) + 1.0
    return learning_rate * d_model**-0.5 * jnp.minimum(n**-0.5, n * warmup_steps**-1.5)

  return schedule


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  lr, warmup = config.learning_rate, config.warmup_steps
  if config.schedule == 'constant':
    if warmup == 0:
      return optax.constant_schedule(lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
    )
  if config.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=warmup,
        decay_steps=max(config.num_train_steps, warmup + 1),
        end_value=0.0,
    )
  if config.schedule == 'noam':
    return noam_schedule(lr, config.model.d_model, max(warmup, 1))
  raise ValueError(f'config.schedule: unknown schedule {config.schedule!r}; known: {SCHEDULES}')


def _decay_mask(params):
  """Weight decay on matrices (kernels, embeddings) only, not on biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  schedule = make_schedule(config)
  if config.optimizer == 'adamw':
    opt = optax.adamw(
        schedule,
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        mask=_decay_mask,
    )
  elif config.optimizer == 'adam':
    opt = optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
  elif config.optimizer == 'sgd':
    opt = optax.sgd(schedule, momentum=config.momentum or None)
  else:
    raise ValueError(
        f'config.optimizer: unknown optimizer {config.optimizer!r}; known: {OPTIMIZERS}'
    )
  if config.grad_clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), opt)
  return opt
