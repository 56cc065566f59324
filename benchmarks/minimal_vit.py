"""A hand-written JAX version of the encoder classifier's training step (no Flax), for benchmarks.

Same math and shapes as `transformer.classifier.EncoderClassifier` (pre-LN blocks, learned
positions, conv or linear stem, mean or [CLS] pooling, no dropout) and the same AdamW update,
written as plainly as possible: the speed reference the project's step is compared with
(benchmarks/train_step.py). Options (`Variant`) switch in the model-level changes that were
measured as candidate speed-ups (fused QKV projection, attention einsums without head
transposes, cache-sized microbatches).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

Params = dict[str, Any]
# The model sizes are read from a transformer.classifier.ClassifierConfig (image_size, channels,
# patch_size, num_classes, d_model, num_heads, num_layers, d_ff, stem, stem_widths, pooling,
# num_tokens); nothing else of the project is used.
Shape = Any


@dataclasses.dataclass(frozen=True)
class Variant:
  """Candidate speed-ups, all off by default (= the project's math, op for op)."""

  fused_qkv: bool = False  # one [d, 3, h, d_k] projection instead of three [d, h, d_k]
  direct_heads: bool = False  # einsum over [b, n, h, d_k] directly, no swapaxes to [b, h, n, d_k]
  microbatches: int = 1  # gradient summed over this many slices of the batch (lax.scan)


def init_params(key: jax.Array, s: Shape, v: Variant = Variant()) -> Params:
  """Random parameters with the shapes of the Flax model (scale does not matter for speed)."""
  keys = iter(jax.random.split(key, 16 + 8 * s.num_layers))
  normal = lambda *shape: 0.05 * jax.random.normal(next(keys), shape)  # noqa: E731
  d, h, dk = s.d_model, s.num_heads, s.d_model // s.num_heads
  norm = lambda: {'scale': jnp.ones(d), 'bias': jnp.zeros(d)}  # noqa: E731
  p: Params = {'stem': [], 'pos': normal(s.num_tokens, d), 'final_norm': norm()}
  c_in = s.channels
  for width in _stem_widths(s):
    p['stem'].append({'kernel': normal(3, 3, c_in, width), 'bias': jnp.zeros(width)})
    c_in = width
  if s.stem != 'conv':
    c_in = s.patch_size**2 * s.channels
  p['embed'] = {'kernel': normal(c_in, d), 'bias': jnp.zeros(d)}
  if s.pooling == 'cls':
    p['cls'] = normal(1, 1, d)
  p['head'] = {'kernel': normal(d, s.num_classes), 'bias': jnp.zeros(s.num_classes)}
  p['layers'] = []
  for _ in range(s.num_layers):
    layer = {
        'norm1': norm(),
        'norm2': norm(),
        'out': {'kernel': normal(h, dk, d), 'bias': jnp.zeros(d)},
        'wi': {'kernel': normal(d, s.d_ff), 'bias': jnp.zeros(s.d_ff)},
        'wo': {'kernel': normal(s.d_ff, d), 'bias': jnp.zeros(d)},
    }
    if v.fused_qkv:
      layer['qkv'] = {'kernel': normal(d, 3, h, dk), 'bias': jnp.zeros((3, h, dk))}
    else:
      for name in ('query', 'key', 'value'):
        layer[name] = {'kernel': normal(d, h, dk), 'bias': jnp.zeros((h, dk))}
    p['layers'].append(layer)
  return p


def _stem_widths(s: Shape) -> list[int]:
  return list(s.stem_widths) if s.stem == 'conv' else []


def layer_norm(x: jax.Array, p: Params, eps: float = 1e-6) -> jax.Array:
  """Flax LayerNorm's math: var = E[x^2] - E[x]^2. x [..., d]."""
  mean = x.mean(-1, keepdims=True)
  var = jnp.maximum((x * x).mean(-1, keepdims=True) - mean * mean, 0.0)
  return (x - mean) * jax.lax.rsqrt(var + eps) * p['scale'] + p['bias']


def self_attention(x: jax.Array, p: Params, v: Variant) -> jax.Array:
  """x [b, n, d] -> [b, n, d]; softmax(q k^T / sqrt(d_k)) v over heads, then the output proj."""
  if v.fused_qkv:
    qkv = jnp.einsum('bnd,dchk->cbnhk', x, p['qkv']['kernel']) + p['qkv']['bias'][:, None, None]
    q, k, val = qkv[0], qkv[1], qkv[2]  # [b, n, h, d_k]
  else:
    q, k, val = (
        jnp.einsum('bnd,dhk->bnhk', x, p[n]['kernel']) + p[n]['bias']
        for n in ('query', 'key', 'value')
    )
  q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  if v.direct_heads:
    weights = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k), axis=-1)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, val)  # [b, n, h, d_k]
  else:
    q, k, val = (jnp.swapaxes(t, 1, 2) for t in (q, k, val))  # [b, h, n, d_k]
    weights = jax.nn.softmax(jnp.einsum('bhqd,bhkd->bhqk', q, k), axis=-1)
    out = jnp.swapaxes(jnp.einsum('bhqk,bhkd->bhqd', weights, val), 1, 2)
  return jnp.einsum('bnhk,hkd->bnd', out, p['out']['kernel']) + p['out']['bias']


def forward(p: Params, images: jax.Array, s: Shape, v: Variant = Variant()) -> jax.Array:
  """images [b, H, W, c] -> logits [b, classes]."""
  b = images.shape[0]
  x = images
  if s.stem == 'conv':
    for conv in p['stem']:  # stride-2 3x3 convs + ReLU
      x = jax.lax.conv_general_dilated(
          x, conv['kernel'], (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
      )
      x = jax.nn.relu(x + conv['bias'])
    x = x.reshape(b, -1, x.shape[-1])
  else:
    ps = s.patch_size
    gh, gw = s.image_size[0] // ps, s.image_size[1] // ps
    x = x.reshape(b, gh, ps, gw, ps, s.channels).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, gh * gw, -1)
  x = x @ p['embed']['kernel'] + p['embed']['bias']  # [b, n, d]
  if s.pooling == 'cls':
    x = jnp.concatenate([jnp.broadcast_to(p['cls'], (b, 1, s.d_model)), x], axis=1)
  x = x + p['pos']
  for layer in p['layers']:
    x = x + self_attention(layer_norm(x, layer['norm1']), layer, v)
    h = jax.nn.relu(layer_norm(x, layer['norm2']) @ layer['wi']['kernel'] + layer['wi']['bias'])
    x = x + h @ layer['wo']['kernel'] + layer['wo']['bias']
  x = layer_norm(x, p['final_norm'])
  pooled = x[:, 0] if s.pooling == 'cls' else x.mean(axis=1)
  return pooled @ p['head']['kernel'] + p['head']['bias']


def make_train_step(s: Shape, v: Variant = Variant(), learning_rate: float = 1e-3):
  """(optax transform, step(params, opt_state, images, labels) -> (params, opt_state, loss))."""
  tx = optax.adamw(learning_rate)

  def loss_sum(p, images, labels):
    logits = forward(p, images, s, v)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

  def step(p, opt_state, images, labels):
    n, m = images.shape[0], v.microbatches
    if m == 1:
      loss, grads = jax.value_and_grad(loss_sum)(p, images, labels)
    else:  # sum of per-slice gradients: each slice's activations stay in cache

      def body(acc, xy):
        return jax.tree.map(jnp.add, acc, jax.value_and_grad(loss_sum)(p, *xy)), None

      zeros = jax.tree.map(jnp.zeros_like, (jnp.zeros(()), p))
      slices = (images.reshape(m, n // m, *images.shape[1:]), labels.reshape(m, n // m))
      (loss, grads), _ = jax.lax.scan(body, zeros, slices)
    loss, grads = loss / n, jax.tree.map(lambda g: g / n, grads)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  return tx, step
