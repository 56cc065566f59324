"""Optimizers and learning-rate schedules from the config (optax).

Config fields (top level): optimizer ('adamw' | 'adam' | 'sgd'), learning_rate,
weight_decay, adam_b1, adam_b2, adam_eps, momentum (sgd), grad_clip_norm (0 = off),
schedule ('constant' | 'cosine' | 'noam'), warmup_steps, num_train_steps.

'noam' is the paper's schedule (Vaswani et al. 2017, eq. 3):
  lr(n) = learning_rate * d_model^-0.5 * min(n^-0.5, n * warmup_steps^-1.5), n = step + 1,
so learning_rate = 1.0 reproduces the paper; d_model is read from config.model.d_model.

Compile once: `make_optimizer` wraps the optimizer in `optax.inject_hyperparams`, so the
values in `TRACED` live in the optimizer state (`opt_state.hyperparams`) as arrays instead of
being compiled into the train step as constants. Runs (sweep trials) that differ only in them
share one XLA executable, which the persistent compilation cache then serves
(experiments/core/compilation_cache.py). Structural choices (optimizer, schedule kind, clipping on
or off, SGD momentum on or off, num_train_steps) stay static.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ('adamw', 'adam', 'sgd')
SCHEDULES = ('constant', 'cosine', 'noam')
# config field -> hyperparameter name in opt_state.hyperparams (traced, not compiled in).
TRACED = {
    'learning_rate': 'learning_rate',
    'warmup_steps': 'warmup_steps',
    'weight_decay': 'weight_decay',
    'adam_b1': 'b1',
    'adam_b2': 'b2',
    'adam_eps': 'eps',
    'momentum': 'momentum',
    'grad_clip_norm': 'clip_norm',
}


def schedule_value(
    kind: str, step: Any, peak: Any, warmup: Any, total_steps: int, d_model: int = 1
) -> jax.Array:
  """Learning rate at `step` (0-based; scalars, traced or not) for schedule `kind`.

  constant: linear warmup 0 -> peak over `warmup` steps, then peak.
  cosine:   linear warmup, then cosine decay from peak to 0 at max(total_steps, warmup + 1)
            (optax.warmup_cosine_decay_schedule).
  noam:     peak * d_model^-0.5 * min(n^-0.5, n * warmup^-1.5), n = step + 1.
  """
  s = jnp.asarray(step, jnp.float32)
  w = jnp.asarray(warmup, jnp.float32)
  peak = jnp.asarray(peak, jnp.float32)
  ramp = peak * s / jnp.maximum(w, 1.0)
  if kind == 'constant':
    return jnp.where(s < w, ramp, peak)
  if kind == 'cosine':
    decay = jnp.maximum(jnp.maximum(float(total_steps), w + 1.0) - w, 1.0)
    progress = jnp.clip((s - w) / decay, 0.0, 1.0)
    return jnp.where(s < w, ramp, peak * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
  if kind == 'noam':
    n, w = s + 1.0, jnp.maximum(w, 1.0)
    return peak * d_model**-0.5 * jnp.minimum(n**-0.5, n * w**-1.5)
  raise ValueError(f'config.schedule: unknown schedule {kind!r}; known: {SCHEDULES}')


def _d_model(config: ml_collections.ConfigDict) -> int:
  return config.model.d_model if config.schedule == 'noam' else 1


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """The config's schedule with its values as constants: step -> learning rate."""
  if config.schedule not in SCHEDULES:
    raise ValueError(f'config.schedule: unknown schedule {config.schedule!r}; known: {SCHEDULES}')
  kind, d_model = config.schedule, _d_model(config)
  lr, warmup, total = config.learning_rate, config.warmup_steps, config.num_train_steps
  return lambda step: schedule_value(kind, step, lr, warmup, total, d_model)


def _decay_mask(params):
  """Weight decay on matrices (kernels, embeddings) only, not on biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, float]:
  """The traced hyperparameters of `config` (names as in opt_state.hyperparams)."""
  return {name: float(config[field]) for field, name in TRACED.items()}


def optimizer_factory(config: ml_collections.ConfigDict):
  """inner_factory(**hyperparams) -> the optimizer; only structural choices are read here."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(
        f'config.optimizer: unknown optimizer {config.optimizer!r}; known: {OPTIMIZERS}'
    )
  if config.schedule not in SCHEDULES:
    raise ValueError(f'config.schedule: unknown schedule {config.schedule!r}; known: {SCHEDULES}')
  kind, total, d_model = config.schedule, config.num_train_steps, _d_model(config)
  name, clip, use_momentum = config.optimizer, config.grad_clip_norm > 0, config.momentum > 0

  def build(learning_rate, warmup_steps, weight_decay, b1, b2, eps, momentum, clip_norm):
    schedule = lambda step: schedule_value(kind, step, learning_rate, warmup_steps, total, d_model)
    if name == 'adamw':
      opt = optax.adamw(
          schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=_decay_mask
      )
    elif name == 'adam':
      opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    else:
      opt = optax.sgd(schedule, momentum=momentum if use_momentum else None)
    if clip:
      opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt

  return build


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The config's optimizer, its `TRACED` hyperparameters in `opt_state.hyperparams`."""
  return optax.inject_hyperparams(optimizer_factory(config))(**hyperparams(config))


def learning_rate_at(config: ml_collections.ConfigDict, opt_state: Any, step: Any) -> jax.Array:
  """The learning rate of `step` from the traced hyperparameters in `opt_state`."""
  hp = opt_state.hyperparams
  return schedule_value(
      config.schedule,
      step,
      hp['learning_rate'],
      hp['warmup_steps'],
      config.num_train_steps,
      _d_model(config),
  )


def with_config_hyperparams(config: ml_collections.ConfigDict, opt_state: Any) -> Any:
  """`opt_state` with its traced hyperparameters set from `config` (a resumed run whose
  config changed e.g. the learning rate uses the new value, as before compile-once)."""
  old = opt_state.hyperparams
  new = {
      k: jax.device_put(jnp.asarray(v, old[k].dtype), old[k].sharding)
      for k, v in hyperparams(config).items()
  }
  return opt_state._replace(hyperparams=new)
