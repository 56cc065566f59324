"""experiments/core/init_from.py: a run's parameters from another run's checkpoint."""

import os

import jax
import numpy as np
import pytest

from experiments.core import checkpointing, configuration, init_from, loop
from experiments.core.task import ConfigError
from transformer import language_model, models

# One step whose learning rate is 0 (linear warmup from 0): the parameters after it are the
# initial ones up to the weight decay of a zero step, i.e. exactly what init_from produced.
ONE_STEP = {
    'num_train_steps': 1,
    'eval_every_steps': 1,
    'checkpoint_every_steps': 1,
    'log_every_steps': 1,
    'seed': 1,  # a fresh initialisation unlike the source's (seed 0)
}


def _flat(tree):
  return {
      init_from.partitioning.path_string(p): np.asarray(v)
      for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _fresh_params(config):
  _, trainer = loop.build_run(config, None)
  return _flat(trainer.init_state().params)


def test_parse():
  assert init_from.parse('/runs/a') == ('/runs/a', 'latest')
  assert init_from.parse('/runs/a:best') == ('/runs/a', 'best')
  assert init_from.parse('/runs/a:latest') == ('/runs/a', 'latest')
  assert init_from.parse('/runs/a:1200') == ('/runs/a', 1200)
  assert init_from.parse('/runs/x:y') == ('/runs/x:y', 'latest')  # not a step: part of the path


def test_select_and_mismatches():
  paths = ['encoder/layer_0/ffn/wi/kernel', 'encoder/final_norm/scale', 'head/kernel', 'cls']
  assert init_from.select(paths, '', '') == paths
  assert init_from.select(paths, '^encoder/', '') == paths[:2]
  assert init_from.select(paths, '^encoder/', 'norm') == paths[:1]
  assert init_from.select(paths, '', 'head|cls') == paths[:2]
  target = {'a': ((2, 3), 'float32'), 'b': ((4,), 'float32'), 'c': ((1,), 'float32')}
  source = {'a': ((2, 3), 'float32'), 'b': ((5,), 'float32'), 'c': ((1,), 'bfloat16')}
  assert init_from.mismatches(source, target, ['a']) == []
  assert init_from.mismatches({}, target, ['a']) == ['a: not in the source']
  assert init_from.mismatches(source, target, ['a', 'b', 'c']) == [
      'b: source (5,) float32 vs this model (4,) float32',
      'c: source (1,) bfloat16 vs this model (1,) float32',
  ]


def test_bad_fields_are_config_errors(tiny_digits_config):
  with pytest.raises(ConfigError) as e:
    configuration.validate(tiny_digits_config(init_from_include='encoder/(layer'), 1)
  assert e.value.field == 'init_from_include'
  with pytest.raises(ConfigError) as e:
    configuration.validate(tiny_digits_config(init_from=':best'), 1)
  assert e.value.field == 'init_from'


def test_partial_init_copies_included_and_keeps_the_rest_fresh(
    trained_workdir, tiny_digits_config, tmp_path
):
  source_dir, _ = trained_workdir
  source = _flat(loop.restore_for_inference(source_dir, 'latest').state.params)
  overrides = {
      **ONE_STEP,
      'init_from': source_dir,
      'init_from_include': '^encoder/',
      'init_from_exclude': 'final_norm',
  }
  config = tiny_digits_config(overrides)
  fresh = _fresh_params(config)
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(config, workdir)
  restored = loop.restore_for_inference(workdir, 'latest')
  params = _flat(restored.state.params)
  included = [p for p in params if p.startswith('encoder/') and 'final_norm' not in p]
  assert len(included) == 16  # one layer: 8 attention + 4 FFN + 4 norm leaves
  for path, value in params.items():
    expected = source[path] if path in included else fresh[path]
    np.testing.assert_allclose(value, expected, rtol=0, atol=1e-6, err_msg=path)
  assert not np.allclose(source['head/kernel'], fresh['head/kernel'])  # the test can fail
  # The optimizer starts fresh: one Adam step, not the source's 30 + 1.
  assert int(restored.state.step) == 1
  assert int(restored.state.opt_state.count) == 1

  # Resuming never applies init_from again (a source that is gone would fail if it did).
  again = tiny_digits_config({**overrides, 'num_train_steps': 2, 'init_from': str(tmp_path / 'x')})
  result = loop.train_and_evaluate(again, workdir)
  assert result.step == 2


@pytest.mark.parametrize('which', ['best', 'step'])
def test_a_named_checkpoint_of_the_source(trained_workdir, tiny_digits_config, which):
  source_dir, _ = trained_workdir
  ckpt = checkpointing.Checkpointer(loop.checkpoint_dir(source_dir), read_only=True)
  step = ckpt.all_steps()[0]
  ckpt.close()
  spec = f'{source_dir}:best' if which == 'best' else f'{source_dir}:{step}'
  restored = loop.restore_for_inference(source_dir, 'best' if which == 'best' else step)
  config = tiny_digits_config(seed=1, init_from=spec)
  _, trainer = loop.build_run(config, None)
  state = trainer.init_state()
  params = _flat(init_from.load(config, state.params, trainer.state_sharding.params))
  source = _flat(restored.state.params)
  assert params.keys() == source.keys()
  for path, value in params.items():
    np.testing.assert_array_equal(value, source[path], err_msg=path)


def test_mismatch_is_one_line_listing_the_paths_and_writes_nothing(
    run_py, trained_workdir, tiny_digits_flags, tmp_path
):
  source_dir, _ = trained_workdir  # d_ff 32, one layer
  workdir = tmp_path / 'run'
  overrides = {
      'init_from': source_dir,
      'init_from_include': 'ffn/wi',
      'model.d_ff': 48,
      'model.num_layers': 2,
  }
  out = run_py('train', *tiny_digits_flags(overrides), '--workdir', str(workdir))
  assert out.returncode == 1, out.stderr[-2000:]
  lines = [line for line in out.stderr.splitlines() if 'run.py: error' in line]
  assert len(lines) == 1 and 'Traceback' not in out.stderr, out.stderr[-2000:]
  message = lines[0]
  assert 'encoder/layer_0/ffn/wi/kernel: source (16, 32) float32 vs this model (16, 48)' in message
  assert 'encoder/layer_0/ffn/wi/bias: source (32,) float32 vs this model (48,)' in message
  assert 'encoder/layer_1/ffn/wi/kernel: not in the source' in message
  assert '4 selected parameter(s)' in message
  for name in ('config.json', 'metrics.jsonl', 'tensorboard', 'plots'):
    assert not os.path.exists(workdir / name), name
  checkpoints = workdir / 'checkpoints'
  assert not checkpoints.exists() or not os.listdir(checkpoints)


def test_selecting_nothing_and_a_missing_source_are_errors(tiny_digits_config, tmp_path):
  with pytest.raises(checkpointing.CheckpointNotFoundError, match='not found'):
    loop.train_and_evaluate(
        tiny_digits_config(init_from=str(tmp_path / 'none')), str(tmp_path / 'a')
    )
  assert not os.path.exists(tmp_path / 'a' / 'config.json')


def test_lm_blocks_fit_a_translation_decoder():
  """The documented recipe: an LM's decoder blocks into a translation decoder of the same size
  (the translation decoder's cross-attention stays fresh)."""
  dims = dict(d_model=16, num_heads=2, d_ff=32, norm='pre', dtype='float32')
  lm = language_model.LanguageModel(
      language_model.LanguageModelConfig(vocab_size=40, num_layers=2, max_len=16, **dims)
  )
  mt = models.EncoderDecoder(
      models.EncoderDecoderConfig(
          src_vocab_size=30,
          tgt_vocab_size=50,
          num_encoder_layers=1,
          num_decoder_layers=2,
          max_len=16,
          **dims,
      )
  )
  ids = np.zeros((1, 4), np.int32)
  rngs = {'params': jax.random.PRNGKey(0)}
  lm_specs = init_from.path_specs(jax.eval_shape(lambda: lm.init(rngs, ids))['params'])
  mt_specs = init_from.path_specs(jax.eval_shape(lambda: mt.init(rngs, ids, ids))['params'])
  selected = init_from.select(list(mt_specs), '^decoder/', 'cross_attention')
  assert 'decoder/layer_1/self_attention/query/kernel' in selected
  assert 'decoder/final_norm/scale' in selected
  assert not any('cross_attention' in p for p in selected)
  assert init_from.mismatches(lm_specs, mt_specs, selected) == []
  # Without the exclusion, the cross-attention is named as missing in the LM.
  missing = init_from.mismatches(
      lm_specs, mt_specs, init_from.select(list(mt_specs), '^decoder/', '')
  )
  assert missing and all(
      'cross_attention' in line and 'not in the source' in line for line in missing
  )
