"""Sampling continuations of prompts over a cached step function (temperature, top-k, greedy).

Like the searches of `transformer/decoding.py`, `sample` only sees a step function

    step_fn(ids [n, 1] int32, cache) -> (logits [n, vocab] or [n, 1, vocab], new_cache)

that feeds ONE token per sequence and advances a key/value cache. It is pure, batched and
`jax.jit`-able (a `lax.while_loop` over positions). Every row starts with its prompt
(`prompt [n, P]`, the first `prompt_lengths[i]` tokens of row i, usually bos + text): prompt
tokens are fed one by one (teacher-forced), then each next token is drawn from

    softmax(top_k(logits) / temperature)        (temperature > 0)
    argmax(logits)                              (temperature == 0: greedy)

A row stops after it emits `eos_id` or reaches `max_lengths[i]` tokens (prompt included);
later positions hold `pad_id`. The random key of position t is `fold_in(rng, t)`, so the
output is a deterministic function of (params, prompt, rng, settings).

`language_model_sample` wires this to `transformer.language_model.LanguageModel`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from transformer.decoding import StepFn, log_probs

Array = jax.Array


def filter_logits(logits: Array, temperature: float | Array, top_k: int = 0) -> Array:
  """log-probabilities [..., V] of the sampling distribution: the `top_k` largest logits
  (all when top_k == 0 or >= V; ties at the k-th value are kept) divided by `temperature`
  (> 0), renormalised; the others are -inf."""
  logits = logits.astype(jnp.float32)
  if 0 < top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [..., 1]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.nn.log_softmax(logits / temperature, axis=-1)


def sample(
    step_fn: StepFn,
    cache: Any,
    prompt: Array,
    prompt_lengths: Array,
    rng: Array,
    *,
    max_len: int,
    temperature: float | Array = 1.0,
    top_k: int = 0,
    max_lengths: Array | None = None,
    eos_id: int,
    pad_id: int = 0,
) -> Array:
  """Continues each prompt. prompt [n, P] int32 (P <= max_len), prompt_lengths [n] (>= 1).

  max_lengths [n]: tokens per row incl. the prompt (default and cap: max_len).
  temperature: 0 = greedy (a traced value is fine); top_k: static, 0 = off.
  Returns tokens [n, max_len]: the prompt, the continuation (incl. eos when emitted), pad.
  """
  n, p = prompt.shape
  if p > max_len:
    raise ValueError(f'sample: prompts of {p} tokens do not fit in max_len={max_len}.')
  if max_lengths is None:
    max_lengths = jnp.full((n,), max_len, jnp.int32)
  max_lengths = jnp.minimum(max_lengths, max_len)
  tokens = jnp.full((n, max_len), pad_id, jnp.int32).at[:, :p].set(prompt.astype(jnp.int32))
  # A prompt token beyond the row's prompt length is not a prompt token: mask it out.
  tokens = jnp.where(jnp.arange(max_len) < prompt_lengths[:, None], tokens, pad_id)
  done = prompt_lengths >= max_lengths
  temperature = jnp.asarray(temperature, jnp.float32)
  greedy = temperature <= 0.0

  def cond(state):
    t, _, done, _ = state
    return (t + 1 < max_len) & ~jnp.all(done)

  def body(state):
    t, tokens, done, cache = state
    logits, cache = step_fn(jax.lax.dynamic_slice_in_dim(tokens, t, 1, axis=1), cache)
    logits = log_probs(logits)  # [n, V]
    drawn = jax.random.categorical(
        jax.random.fold_in(rng, t),
        filter_logits(logits, jnp.where(greedy, 1.0, temperature), top_k),
    )
    chosen = jnp.where(greedy, jnp.argmax(logits, axis=-1), drawn).astype(jnp.int32)
    in_prompt = t + 1 < prompt_lengths
    next_ids = jnp.where(in_prompt, tokens[:, t + 1], jnp.where(done, pad_id, chosen))
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, next_ids[:, None], t + 1, axis=1)
    generated = ~in_prompt & ~done
    done = done | (generated & ((next_ids == eos_id) | (t + 2 >= max_lengths)))
    return t + 1, tokens, done, cache

  _, tokens, _, _ = jax.lax.while_loop(cond, body, (jnp.array(0), tokens, done, cache))
  return tokens


def language_model_sample(
    model: Any,
    params: Any,
    prompt: Array,
    prompt_lengths: Array,
    rng: Array,
    *,
    max_new_tokens: int,
    temperature: float | Array = 1.0,
    top_k: int = 0,
    eos_id: int,
) -> Array:
  """Samples with a `LanguageModel`: at most `max_new_tokens` after each prompt and never
  beyond the model's max_len. prompt [n, P] (pad = model.config.pad_id). Returns tokens
  [n, min(P + max_new_tokens, max_len)]. Jit it with model, max_new_tokens, top_k and
  eos_id static (e.g. functools.partial)."""
  cfg = model.config
  max_len = min(prompt.shape[1] + max_new_tokens, cfg.max_len)
  cache = model.init_cache(prompt.shape[0], max_len)

  def step_fn(ids, cache):
    logits, mutated = model.apply(
        {'params': params, 'cache': cache}, ids, decode=True, mutable=['cache']
    )
    return logits, mutated['cache']

  return sample(
      step_fn,
      cache,
      prompt,
      prompt_lengths,
      rng,
      max_len=max_len,
      temperature=temperature,
      top_k=top_k,
      max_lengths=prompt_lengths + max_new_tokens,
      eos_id=eos_id,
      pad_id=cfg.pad_id,
  )
