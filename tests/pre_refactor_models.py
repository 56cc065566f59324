"""Tiny models of every kind, their inputs and outputs: tests/data/pre_refactor/models.npz.

The old code (tests/data/pre_refactor/README.md) wrote the file:

  PYTHONPATH=.:tests python tests/pre_refactor_models.py tests/data/pre_refactor/models.npz

tests/test_compat.py builds the same models with today's code, loads the old parameters and
compares the parameter paths and `outputs` (full pass, one-token-per-call decoding).
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from transformer import ClassifierConfig, EncoderClassifier, EncoderDecoder, EncoderDecoderConfig
from transformer.language_model import LanguageModel, LanguageModelConfig

V = 13  # vocabulary of the sequence models
TINY = dict(d_model=8, num_heads=2, d_ff=16, dropout_rate=0.0, max_len=12)
IMAGE = dict(image_size=(8, 8), d_model=8, num_heads=2, d_ff=16, dropout_rate=0.0)
LOCAL_P = dict(score='general', weighting='local', window=2, centers='predicted', gaussian=True)
ADDITIVE_CHUNKED = dict(
    score='additive', d_a=3, weighting='local', window=1, implementation='chunked'
)
CASES = {  # name: (kind, config)
    'ed_post_sinusoidal': (
        'encoder_decoder',
        dict(TINY, num_encoder_layers=1, num_decoder_layers=2),
    ),
    'ed_pre_rope_additive_local_m_chunked': (
        'encoder_decoder',
        dict(
            TINY,
            num_encoder_layers=1,
            num_decoder_layers=1,
            norm='pre',
            positional='rope',
            attention=dict(ADDITIVE_CHUNKED, query_chunk_size=4, key_chunk_size=4),
        ),
    ),
    'ed_scan_general_local_p_learned_untied': (
        'encoder_decoder',
        dict(
            TINY,
            num_encoder_layers=2,
            num_decoder_layers=2,
            scan_layers=True,
            positional='learned',
            tie_output_embedding=False,
            share_embeddings=True,
            attention=LOCAL_P,
        ),
    ),
    'lm_pre_sinusoidal_location_hard': (
        'language_model',
        dict(TINY, num_layers=2, attention=dict(score='location', weighting='hard')),
    ),
    'lm_scan_remat_rope_dot_untied': (
        'language_model',
        dict(
            TINY,
            num_layers=2,
            scan_layers=True,
            remat='full',
            positional='rope',
            norm='post',
            tie_output_embedding=False,
            attention=dict(score='dot'),
        ),
    ),
    'cls_conv_mean_scan': (
        'classifier',
        dict(
            IMAGE,
            patch_size=4,
            num_layers=2,
            pooling='mean',
            stem='conv',
            positional='sinusoidal',
            scan_layers=True,
        ),
    ),
    'cls_linear_cls_post_local': (
        'classifier',
        dict(
            IMAGE,
            patch_size=2,
            num_layers=1,
            norm='post',
            attention=dict(weighting='local', window=3),
        ),
    ),
}


def build(kind: str, config: dict):
  if kind == 'encoder_decoder':
    return EncoderDecoder(EncoderDecoderConfig(src_vocab_size=V, tgt_vocab_size=V, **config))
  if kind == 'language_model':
    return LanguageModel(LanguageModelConfig(vocab_size=V, **config))
  return EncoderClassifier(ClassifierConfig(**config))


def inputs(kind: str) -> dict[str, np.ndarray]:
  """The model's call arguments, in order."""
  rng = np.random.default_rng(0)
  if kind == 'classifier':
    return {'images': rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)}
  ids = rng.integers(1, V, size=(2, 7)).astype(np.int32)
  ids[1, 5:] = 0  # padding
  if kind == 'language_model':
    return {'ids': ids}
  return {'src': ids, 'tgt': np.roll(ids, 1, axis=1)}


def outputs(kind: str, model, params, x: dict) -> dict[str, np.ndarray]:
  """'logits' of the full pass; for sequence models also 'step_logits' [b, t, V]: the tokens
  fed one per call through the decode cache."""
  out = {'logits': np.asarray(model.apply({'params': params}, *x.values()))}
  if kind == 'classifier':
    return out
  ids = x['ids'] if kind == 'language_model' else x['tgt']
  if kind == 'language_model':
    step = lambda variables, token: model.apply(  # noqa: E731
        variables, token, decode=True, mutable=['cache']
    )
  else:
    memory = model.apply({'params': params}, x['src'], method=EncoderDecoder.encode)
    step = lambda variables, token: model.apply(  # noqa: E731
        variables,
        token,
        memory,
        x['src'],
        decode=True,
        method=EncoderDecoder.decode,
        mutable=['cache'],
    )
  cache, steps = model.init_cache(*ids.shape), []
  for t in range(ids.shape[1]):
    logits, mutated = step({'params': params, 'cache': cache}, ids[:, t : t + 1])
    cache = mutated['cache']
    steps.append(logits[:, 0])
  out['step_logits'] = np.asarray(jnp.stack(steps, 1))
  return out


def main(path: str) -> None:
  arrays, meta = {}, {}
  for i, (name, (kind, config)) in enumerate(CASES.items()):
    model, x = build(kind, config), inputs(kind)
    params = model.init(jax.random.key(i), *x.values())['params']
    flat = traverse_util.flatten_dict(jax.device_get(params), sep='/')
    # One float32 vector per case (paths and shapes in meta): far smaller than one entry each.
    assert all(np.asarray(leaf).dtype == np.float32 for leaf in flat.values())
    arrays[f'{name}|params'] = np.concatenate([np.ravel(leaf) for leaf in flat.values()])
    for group, values in (('inputs', x), ('outputs', outputs(kind, model, params, x))):
      arrays.update({f'{name}|{group}|{k}': v for k, v in values.items()})
    layout = [[p, list(np.shape(leaf))] for p, leaf in flat.items()]
    meta[name] = {'kind': kind, 'config': config, 'params': layout}
  arrays['meta'] = np.array(json.dumps(meta))
  np.savez_compressed(path, **arrays)


def load(path: str, name: str) -> tuple[dict, dict, dict, dict]:
  """(case meta, old params, inputs, outputs) of one case of the file `main` wrote."""
  with np.load(path) as npz:
    case = json.loads(str(npz['meta']))[name]
    vector, flat, offset = npz[f'{name}|params'], {}, 0
    for p, shape in case['params']:
      size = int(np.prod(shape))
      flat[p] = vector[offset : offset + size].reshape(shape)
      offset += size
    assert offset == vector.size
    group = lambda g: {  # noqa: E731
        k.split('|')[2]: npz[k] for k in npz.files if k.startswith(f'{name}|{g}|')
    }
    return case, traverse_util.unflatten_dict(flat, sep='/'), group('inputs'), group('outputs')


if __name__ == '__main__':
  main(sys.argv[1])
