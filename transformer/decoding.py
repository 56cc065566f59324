"""Autoregressive decoding: greedy and beam search over a cached step function.

Both searches are pure, batched and `jax.jit`-able (a `lax.while_loop` over positions).
They only see a step function

    step_fn(ids [n, 1] int32, cache) -> (logits [n, vocab] or [n, 1, vocab], new_cache)

which feeds ONE token per sequence and advances a key/value cache (flax's 'cache'
collection; see `EncoderDecoder.init_cache`). Token 0 of every sequence is `bos_id`.
`max_lengths` [batch] caps each output (eos included): at the last allowed position eos is
forced. After eos, sequences are padded with `pad_id`.

Beam search (Wu et al. 2016, GNMT length penalty): hypotheses are ranked by
`log p(y | x) / lp(|y|)`, `lp(n) = ((5 + n) / 6) ** alpha`. A hypothesis that emitted eos
stays in the beam with its final score (it competes with the open ones but is not
extended), so the search stops when every beam is finished, and with `beam_size=1` it is
exactly greedy search. It stops early once no open hypothesis can beat the best finished
one (as in the flax WMT example). The cache of `step_fn` must hold `batch * beam_size` rows ordered
batch-major (row `i * beam_size + j` = beam j of sentence i, see `tile_beams`); it is
reordered with `gather_beams` after every step along each leaf's batch axis, given explicitly by
`cache_batch_axes` (a pytree like the cache: an int axis, or None for leaves without rows such
as `cache_index`). `kv_cache_batch_axes` gives them for the models' caches, unrolled
([batch, heads, len, d_k] keys/values) or scanned ([layers, batch, heads, len, d_k]).

`encoder_decoder_search` wires these to `transformer.models.EncoderDecoder` (or the
`transformer.rnn.RNNEncoderDecoder`, which has the same interface).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
StepFn = Callable[[Array, Any], tuple[Array, Any]]
NEG_INF = -1.0e9  # finite "minus infinity": keeps arithmetic NaN-free


def length_penalty(length: Array, alpha: float) -> Array:
  """GNMT length penalty lp(n) = ((5 + n) / 6) ** alpha (1 when alpha = 0)."""
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def tile_beams(x: Array, beam_size: int) -> Array:
  """[batch, ...] -> [batch * beam_size, ...], each row repeated beam_size times."""
  return jnp.repeat(x, beam_size, axis=0)


KV_CACHE_LEAVES = ('cached_key', 'cached_value')  # [..., batch, heads, len, d_k]
RECURRENT_STATE = 'recurrent_state'  # RNN decoders' carries, leaves [batch, d] (rnn.py)


def kv_cache_batch_axes(cache: Any) -> Any:
  """Batch axis of every leaf of a models' decode cache (None: no batch axis).

  Key/value leaves are [*layer_axes, batch, heads, len, d_k] (a scanned stack adds the leading
  layer axis), so their batch axis is ndim - 4; the leaves of an RNN decoder's
  'recurrent_state' (transformer/rnn.py) are [batch, d]; 'cache_index' leaves have none."""

  def axis(path, leaf):
    names = [str(getattr(k, 'key', k)) for k in path]
    if names[-1] in KV_CACHE_LEAVES:
      return leaf.ndim - 4
    return 0 if RECURRENT_STATE in names else None

  return jax.tree_util.tree_map_with_path(axis, cache)


def gather_beams(
    tree: Any,
    beam_indices: Array,
    batch_size: int,
    beam_size: int,
    batch_axes: Any = None,
) -> Any:
  """Reorders the batch * beam rows of `tree`: new beam j of sentence i takes old beam
  `beam_indices[i, j]` of sentence i.

  batch_axes: a pytree like `tree` of int axes (None = leave the leaf alone), or None for
  "axis 0 of every leaf whose leading dimension is batch * beam" (other leaves unchanged)."""
  rows = (jnp.arange(batch_size)[:, None] * beam_size + beam_indices).reshape(-1)
  if batch_axes is None:
    n = batch_size * beam_size
    batch_axes = jax.tree.map(
        lambda x: 0 if getattr(x, 'ndim', 0) >= 1 and x.shape[0] == n else None, tree
    )
  leaves, treedef = jax.tree.flatten(tree)
  axes = treedef.flatten_up_to(batch_axes)
  gathered = [x if a is None else jnp.take(x, rows, axis=a) for x, a in zip(leaves, axes)]
  return jax.tree.unflatten(treedef, gathered)


def log_probs(logits: Array) -> Array:
  """Log-softmax over the vocabulary in float32; one step's logits [n, 1, V] or [n, V] -> [n, V]."""
  if logits.ndim == 3:  # [n, 1, vocab]
    logits = logits[:, 0]
  return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def _force_eos(logp: Array, force: Array, eos_id: int) -> Array:
  """Where `force` (broadcast over the vocab axis), only eos keeps its probability."""
  is_eos = jnp.arange(logp.shape[-1]) == eos_id
  return jnp.where(force[..., None] & ~is_eos, NEG_INF, logp)


def greedy_search(
    step_fn: StepFn,
    cache: Any,
    max_lengths: Array,
    *,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
) -> Array:
  """Argmax decoding. max_lengths [batch] (<= max_len). Returns tokens [batch, max_len]."""
  batch = max_lengths.shape[0]
  max_lengths = jnp.minimum(max_lengths, max_len)
  tokens = jnp.full((batch, max_len + 1), pad_id, jnp.int32).at[:, 0].set(bos_id)
  finished = jnp.zeros((batch,), bool)

  def cond(state):
    t, _, finished, _ = state
    return (t < max_len) & ~jnp.all(finished)

  def body(state):
    t, tokens, finished, cache = state
    logits, cache = step_fn(jax.lax.dynamic_slice_in_dim(tokens, t, 1, axis=1), cache)
    logp = _force_eos(log_probs(logits), t + 1 >= max_lengths, eos_id)  # [b, V]
    next_ids = jnp.argmax(logp, axis=-1).astype(jnp.int32)
    next_ids = jnp.where(finished, pad_id, next_ids)
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, next_ids[:, None], t + 1, axis=1)
    return t + 1, tokens, finished | (next_ids == eos_id), cache

  _, tokens, _, _ = jax.lax.while_loop(cond, body, (jnp.array(0), tokens, finished, cache))
  return tokens[:, 1:]


def beam_search(
    step_fn: StepFn,
    cache: Any,
    max_lengths: Array,
    *,
    beam_size: int,
    alpha: float,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    cache_batch_axes: Any = None,
) -> tuple[Array, Array]:
  """Beam search with the GNMT length penalty.

  `cache` has batch * beam_size rows (see module docstring) along `cache_batch_axes`
  (see `gather_beams`). max_lengths [batch].
  Returns (tokens [batch, beam, max_len], scores [batch, beam]) sorted best first;
  scores are log p(y | x) / lp(|y|). The search stops as soon as the best hypothesis of
  every sentence is certain; beams still open then are returned last with score NEG_INF.
  """
  batch, k = max_lengths.shape[0], beam_size
  max_lengths = jnp.minimum(max_lengths, max_len)
  tokens = jnp.full((batch, k, max_len + 1), pad_id, jnp.int32).at[:, :, 0].set(bos_id)
  # Only beam 0 is live at the start, so the first step does not pick duplicates.
  scores = jnp.full((batch, k), NEG_INF, jnp.float32).at[:, 0].set(0.0)  # log p, unnormalised
  finished = jnp.zeros((batch, k), bool)
  lengths = jnp.zeros((batch, k), jnp.int32)  # output length (eos included) once finished

  def cond(state):
    t, _, scores, finished, lengths, _ = state
    # Stop early once no open beam can still beat the best finished one: an open beam's
    # log p only decreases and lp(n) <= lp(max_length), so log p / lp(max_length) bounds it.
    best_done = jnp.max(
        jnp.where(finished, scores / length_penalty(lengths, alpha), NEG_INF), axis=1, keepdims=True
    )  # [b, 1]
    bound = scores / length_penalty(max_lengths, alpha)[:, None]  # [b, k]
    decided = finished | (bound < best_done)
    return (t < max_len) & ~jnp.all(decided)

  def body(state):
    t, tokens, scores, finished, lengths, cache = state
    last = jax.lax.dynamic_slice_in_dim(tokens, t, 1, axis=2).reshape(batch * k, 1)
    logits, cache = step_fn(last, cache)
    logp = log_probs(logits).reshape(batch, k, -1)  # [b, k, V]
    vocab = logp.shape[-1]
    logp = _force_eos(logp, (t + 1 >= max_lengths)[:, None], eos_id)
    # Candidates: open beams extend with any token; a finished beam only with pad (itself).
    is_pad = jnp.arange(vocab) == pad_id
    extend = scores[..., None] + logp
    keep = jnp.where(is_pad, scores[..., None], NEG_INF)
    cand_scores = jnp.where(finished[..., None], keep, extend)  # [b, k, V]
    cand_lengths = jnp.where(finished, lengths, t + 1)  # [b, k]
    ranking = cand_scores / length_penalty(cand_lengths, alpha)[..., None]
    _, flat = jax.lax.top_k(ranking.reshape(batch, k * vocab), k)  # [b, k]
    beam_idx, token = flat // vocab, (flat % vocab).astype(jnp.int32)

    take = lambda x: jnp.take_along_axis(x, beam_idx, axis=1)  # noqa: E731
    was_finished = take(finished)
    scores = jnp.take_along_axis(cand_scores.reshape(batch, k * vocab), flat, axis=1)
    lengths = jnp.where(was_finished, take(lengths), t + 1)
    finished = was_finished | (token == eos_id)
    tokens = jnp.take_along_axis(tokens, beam_idx[..., None], axis=1)
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[..., None], t + 1, axis=2)
    cache = gather_beams(cache, beam_idx, batch, k, cache_batch_axes)
    return t + 1, tokens, scores, finished, lengths, cache

  state = (jnp.array(0), tokens, scores, finished, lengths, cache)
  _, tokens, scores, finished, lengths, _ = jax.lax.while_loop(cond, body, state)
  normalised = scores / length_penalty(lengths, alpha)
  normalised = jnp.where(finished, normalised, NEG_INF)
  order = jnp.argsort(-normalised, axis=1)
  tokens = jnp.take_along_axis(tokens[:, :, 1:], order[..., None], axis=1)
  return tokens, jnp.take_along_axis(normalised, order, axis=1)


def encoder_decoder_step(model: Any, params: Any, memory: Array, src_ids: Array) -> StepFn:
  """The `StepFn` of an `EncoderDecoder` over an encoded source: (ids [b, 1], cache) ->
  (logits [b, 1, tgt_vocab], cache), one target token per call (memory [b, s, d] from
  `model.encode`, src_ids [b, s] for its padding mask)."""

  def step_fn(ids: Array, cache: Any) -> tuple[Array, Any]:
    logits, mutated = model.apply(
        {'params': params, 'cache': cache},
        ids,
        memory,
        src_ids,
        decode=True,
        method=model.decode,
        mutable=['cache'],
    )
    return logits, mutated['cache']

  return step_fn


def encoder_decoder_search(
    model: Any,
    params: Any,
    src_ids: Array,
    *,
    beam_size: int = 4,
    alpha: float = 0.6,
    max_extra_len: int = 50,
    bos_id: int,
    eos_id: int,
) -> tuple[Array, Array]:
  """Translates a batch with an `EncoderDecoder`: greedy when beam_size == 1, else beam.

  src_ids [batch, src_len] (pad = model.config.pad_id). Each output is at most
  (its source length incl. eos) + max_extra_len tokens, and never more than the model's
  max_len. Returns (tokens [batch, max_len_out], scores [batch]) of the best hypothesis;
  `scores` are length-normalised log-probabilities (0 for greedy). Jit it with the model,
  beam_size, alpha, max_extra_len and the ids static (e.g. via functools.partial).
  """
  cfg = model.config
  batch, src_len = src_ids.shape
  max_len = min(src_len + max_extra_len, cfg.max_len)
  max_lengths = (src_ids != cfg.pad_id).sum(axis=-1).astype(jnp.int32) + max_extra_len
  memory = model.apply({'params': params}, src_ids, method=model.encode)
  if beam_size > 1:
    memory, src_rows = tile_beams(memory, beam_size), tile_beams(src_ids, beam_size)
  else:
    src_rows = src_ids
  cache = model.init_cache(src_rows.shape[0], max_len)
  step_fn = encoder_decoder_step(model, params, memory, src_rows)
  common = dict(max_len=max_len, bos_id=bos_id, eos_id=eos_id, pad_id=cfg.pad_id)
  if beam_size == 1:
    return greedy_search(step_fn, cache, max_lengths, **common), jnp.zeros((batch,), jnp.float32)
  tokens, scores = beam_search(
      step_fn,
      cache,
      max_lengths,
      beam_size=beam_size,
      alpha=alpha,
      cache_batch_axes=kv_cache_batch_axes(cache),
      **common,
  )
  return tokens[:, 0], scores[:, 0]
