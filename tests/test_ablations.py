"""Ablation sweeps: named variants, the configs/ablations/*.py configs (every variant validates;
the paper variants train under mock WMT14 data), and the ablation report of a tiny real sweep."""

from __future__ import annotations

import json
import os
import re
import statistics

import pytest

from conftest import TINY_DIGITS, _override
from sweep_helpers import load_trials, write_sweep

CONFIGS = [
    ('heads', 'mnist'),
    ('heads', 'mnist-tuned'),
    ('heads', 'multi30k'),
    ('heads', 'multi30k-tuned'),
    ('heads', 'wmt14'),
    ('attention', 'mnist'),
    ('attention', 'multi30k'),
    ('attention', 'wmt14'),
    ('attention', 'mnist-table3-tuned'),
    ('attention', 'multi30k-table3-tuned'),
    ('scaling', 'multi30k'),
    ('scaling', 'multi30k-tuned'),
    ('scaling', 'wmt14'),
    ('scaling', 'mnist-tuned'),
    ('scaling', 'lm'),
]


def _ablation(name: str, arg: str):
  from experiments.sweep import spec  # pylint: disable=g-import-not-at-top

  return spec.load_config_file(f'configs/ablations/{name}.py:{arg}')


def _table(config) -> dict:
  from experiments.sweep import variants  # pylint: disable=g-import-not-at-top

  return variants.table(config)


@pytest.mark.parametrize('name,arg', CONFIGS)
def test_every_ablation_config_validates(name, arg):
  from experiments.sweep import spec, variants  # pylint: disable=g-import-not-at-top

  from experiments.sweep import tune_compare  # pylint: disable=g-import-not-at-top

  config = _ablation(name, arg)
  if tune_compare.is_tuned(config):  # its stages run (tests/test_ablations_tune.py)
    spec.validate(tune_compare.tune_stage(config), 1)
    config = tune_compare.compare_stage(config, {n: 1e-3 for n in _table(config)})
  dims = spec.validate(config, 1)  # every variant is checked as a full experiment
  table = _table(config)
  assert [d.field for d in dims] == [variants.FIELD]
  assert 'base' in table and len(table) >= 5
  assert spec.total_runs(config, dims) == len(table) * config.seeds
  assert config.seeds >= 3 and config.sampler == 'grid'
  for variant in table:  # each axis varied alone: every variant changes fields of one axis
    assert variant == 'base' or '=' in variant


def test_axes_match_table_3():
  heads = _table(_ablation('heads', 'multi30k'))
  assert {v['model.num_heads'] for n, v in heads.items() if n != 'base'} == {1, 2, 4, 16}
  scaling = _table(_ablation('scaling', 'wmt14'))
  assert scaling['N=8'] == {'model.num_encoder_layers': 8, 'model.num_decoder_layers': 8}
  attention = _table(_ablation('attention', 'mnist'))
  assert attention['weighting=local,w=3'] == {
      'model.attention.weighting': 'local',
      'model.attention.window': 3,
  }
  assert {n for n in attention if n.startswith('score=')} == {
      'score=dot',
      'score=general',
      'score=additive',
      'score=location',
  }
  assert {'dropout=0.0', 'dropout=0.2', 'label_smoothing=0.0', 'label_smoothing=0.2'} <= set(
      attention
  )
  assert {'positional=learned', 'positional=rope'} <= set(attention)


def test_lm_sizes_span_2_5_decades_in_non_embedding_parameters():
  """12 d^2 L per pre-LN block with d_ff = 4 d (4 d^2 attention + 8 d^2 FFN), biases aside:
  >= 8 sizes over >= 10^2.5 (issue 21 section 4)."""
  table = _table(_ablation('scaling', 'lm'))
  base = _ablation('scaling', 'lm').base.model
  sizes = [(base.d_model, base.num_layers)]
  sizes += [(v['model.d_model'], v['model.num_layers']) for n, v in table.items() if n != 'base']
  approx = sorted(12 * d * d * n for d, n in sizes)
  assert len(set(approx)) >= 8 and approx[-1] / approx[0] >= 10**2.5


def test_architecture_ablation_is_the_rnn_config_against_the_default():
  """configs/ablations/architecture.py:multi30k: the base is configs/translation_multi30k.py as it
  is, and its one variant trains exactly that config's :rnn variant, 3 seeds each (issue 22)."""
  from experiments.sweep import spec, variants  # pylint: disable=g-import-not-at-top

  config = _ablation('architecture', 'multi30k')
  dims = spec.validate(config, 1)
  assert list(_table(config)) == ['base', 'architecture=rnn']
  assert spec.total_runs(config, dims) == 2 * 3 and config.seeds == 3
  default = spec.load_config_file('configs/translation_multi30k.py').to_dict()
  rnn = spec.load_config_file('configs/translation_multi30k.py:rnn').to_dict()
  assert default != rnn
  for name, expected in (('base', default), ('architecture=rnn', rnn)):
    trial = config.base.copy_and_resolve_references()
    trial.variant = name
    out = variants.expand(config, trial).to_dict()
    del out['variant']
    assert out == expected, name


def test_variant_errors_name_the_variant():
  from experiments.sweep import spec, variants  # pylint: disable=g-import-not-at-top
  from experiments.core.task import ConfigError  # pylint: disable=g-import-not-at-top

  def sweep(points):
    c = spec.sweep_config(_override(spec.load_config_file('configs/digits.py'), TINY_DIGITS))
    c.sampler, c.num_trials = 'grid', 0
    return variants.attach(c, {'base': {}, **points})

  with pytest.raises(ConfigError, match=r'variants\.heads=3: .*model\.num_heads'):
    spec.validate(sweep({'heads=3': {'model.num_heads': 3}}), 1)  # 16 % 3 != 0
  with pytest.raises(ConfigError, match=r"variants\.x=1: .*no field 'nope'"):
    spec.validate(sweep({'x=1': {'model.nope': 1}}), 1)
  with pytest.raises(ConfigError, match=r'variants\.heads=two: .*does not fit'):
    spec.validate(sweep({'heads=two': {'model.num_heads': 'two'}}), 1)
  with pytest.raises(ConfigError, match="'AXIS=VALUE'"):
    sweep({'heads2': {'model.num_heads': 2}})


def test_expand_applies_only_the_trials_variant():
  from experiments.sweep import spec, variants  # pylint: disable=g-import-not-at-top

  c = spec.sweep_config('configs/digits.py')
  variants.attach(
      c,
      {
          'base': {},
          'weighting=local,w=1': {
              'model.attention.weighting': 'local',
              'model.attention.window': 1,
          },
      },
  )
  trial = c.base.copy_and_resolve_references()
  trial.variant = 'weighting=local,w=1'
  out = variants.expand(c, trial)
  assert (out.model.attention.weighting, out.model.attention.window) == ('local', 1)
  assert (trial.model.attention.weighting, trial.model.attention.window) == ('soft', None)
  trial.variant = 'base'
  assert variants.expand(c, trial).to_dict() == trial.to_dict()


def _tiny_wmt14(config):
  return _override(
      config,
      {
          'num_trials': 1,
          'seeds': 1,
          'base.num_train_steps': 2,
          'base.eval_every_steps': 2,
          'base.checkpoint_every_steps': 2,
          'base.log_every_steps': 1,
          'base.batch_size': 16,
          'base.eval_batch_size': 8,
          'base.data.tokens_per_batch': 512,
          'base.data.vocab_size': 100,
          'base.data.length_multiple': 32,
          'base.decoding.beam_size': 1,
          'base.decoding.eval_beam_size': 1,
          'base.decoding.batch_size': 8,
          'base.decoding.max_extra_len': 4,
          'base.model.num_encoder_layers': 1,
          'base.model.num_decoder_layers': 1,
      },
  )


@pytest.mark.parametrize('name', ['heads', 'attention', 'scaling'])
def test_paper_variant_runs_a_few_steps_under_mock_data(name, tmp_path):
  """One variant of each WMT14 (paper) ablation through the sweep worker: the paper's base
  model (d_model 512, FFN 2048, bf16, noam) with its batch and -- to keep CPU compilation
  short -- its depth cut to 1+1 layers (unless the variant sets the depth)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from experiments.sweep import cli, variants  # pylint: disable=g-import-not-at-top

  config = _tiny_wmt14(_ablation(name, 'wmt14'))
  pick = {'heads': 'heads=16', 'attention': 'score=additive', 'scaling': 'd_ff=1024'}[name]
  config.space.variant['values'] = (pick,)  # the one point this test runs
  workdir = str(tmp_path / name)
  with tfds.testing.mock_data(num_examples=8):
    assert cli.run_worker(config, f'{name}_wmt14', workdir, None) == 0
  (trial,) = load_trials(workdir)
  assert trial.state.name == 'COMPLETE' and trial.params['variant'] == pick
  with open(os.path.join(workdir, 'trials', str(trial.number), 'config.json')) as f:
    used = json.load(f)
  for dotted, value in variants.table(config)[pick].items():
    node = used
    for part in dotted.split('.'):
      node = node[part]
    assert node == value
  assert used['model']['d_model'] == 512 and used['model']['dtype'] == 'bfloat16'


# Appended to a sweep_helpers.write_sweep file: its sweep becomes one over named variants.
_VARIANTS = """

from experiments.sweep import variants

_plain = get_config


def get_config():
  return variants.attach(_plain(), {
      'base': {},
      'heads=1': {'model.num_heads': 1},
      'd_model=8': {'model.d_model': 8, 'model.d_ff': 16},
      'weighting=local,w=1': {'model.attention.weighting': 'local', 'model.attention.window': 1},
  })
"""


@pytest.fixture(scope='module')
def tiny_ablation(run_py, tmp_path_factory):
  tmp = tmp_path_factory.mktemp('ablation')
  path = write_sweep(
      tmp,
      "{'learning_rate': space.grid(1e-3)}",
      base={'num_train_steps': 10, 'eval_every_steps': 5, 'log_every_steps': 5},
      name='heads_tiny',
      sampler='grid',
      num_trials=0,
      seeds=2,
  )
  with open(path, 'a') as f:
    f.write(_VARIANTS)
  workdir = tmp / 'sweep'
  result = run_py('sweep', '--config', path, '--workdir', str(workdir), timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(workdir), result


def test_report_renders_from_a_tiny_sweep(tiny_ablation, run_py, tmp_path, monkeypatch):
  workdir, result = tiny_ablation
  assert 'ablation.md' in result.stdout  # run.py sweep writes it with report.md
  out = str(tmp_path / 'docs')
  from experiments.analysis import ablation_plots  # pylint: disable=g-import-not-at-top
  from experiments.analysis import ablation_report  # pylint: disable=g-import-not-at-top

  panels, grid = [], ablation_plots.attention_grid
  monkeypatch.setattr(
      ablation_plots, 'attention_grid', lambda p, path: panels.append(list(p)) or grid(p, path)
  )
  assert ablation_report.main(['--workdir', workdir, '--out', out]) == 0
  # One panel per variant in the tables' order, whatever the trial order: axis by axis, each
  # sorted by value with the base at its own value (heads 1 < 2), a variant shown once.
  assert panels == [['heads=1', 'base', 'd_model=8', 'weighting=local,w=1']]
  with open(os.path.join(out, 'ablation.md')) as f:
    report = f.read()
  for section in ('## heads', '## d_model', '## weighting', '## Scaling'):
    assert section in report
  trials = load_trials(workdir)
  assert len(trials) == 8 and all(t.state.name == 'COMPLETE' for t in trials)
  for variant, label in (('heads=1', '| 1 |'), ('weighting=local,w=1', '| local,w=1 |')):
    values = [t.value for t in trials if t.params['variant'] == variant]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    (line,) = [l for l in report.splitlines() if l.startswith(label)]
    assert f'{mean:.4g} ± {std:.2g}' in line
  heads_1 = [l for l in report.splitlines() if l.startswith('| 1 |')][0]
  # half the base's 2 heads: the paper's row (A) h=4 (half of its 8), matched by value
  assert '| 5.0 (heads=4) | 25.5 (heads=4) |' in heads_1
  assert re.search(r'\| (yes|no) \| (agrees|disagrees|n\.s\.) \(paper -0\.3\) \|$', heads_1)
  assert 'Holm p = p adjusted by Holm over the 3 comparisons of this report' in report
  assert 'complete runs per variant: n = 2' in report
  base = [l for l in report.splitlines() if l.startswith('| 2 (base) |')][0]
  assert '| 4.92 | 25.8 |' in base
  assert 'No power-law fit' in report  # 2 sizes here (test_scaling_section: the fit)
  # Time to the weakest run's best: every run of every variant reaches it (n = 2 each).
  (section,) = re.findall(r'\n## Time to `[^`]+` = [^\n]*\n(.*?)(?=\n## |\Z)', report, re.S)
  rows = [l for l in section.splitlines() if l.startswith('| ') and 'steps to' not in l]
  assert sorted(l.split(' | ')[0][2:] for l in rows) == sorted(panels[0])
  assert all(l.split(' | ')[1] == '2' for l in rows), rows
  for png in ('ablation_heads', 'ablation_curves_heads', 'ablation_attention'):
    assert os.path.getsize(os.path.join(out, 'plots', f'{png}.png')) > 1000
    assert f'plots/{png}.png' in report


def test_report_of_a_plain_sweep_is_an_error(tmp_path, capsys):
  from experiments.analysis import ablation_report  # pylint: disable=g-import-not-at-top

  assert ablation_report.main(['--workdir', str(tmp_path)]) == 1
  assert 'sweep.json' in capsys.readouterr().err


def test_report_of_a_sweep_stopped_before_an_axis_has_a_complete_run(tiny_ablation, tmp_path):
  """Only heads=1 finished (no base): the heads axis is plotted, the others get a one-line note."""
  from experiments.analysis import ablation_report, results  # pylint: disable=g-import-not-at-top

  workdir, _ = tiny_ablation
  study, record = results.load_sweep(workdir, None)
  rows = results.trial_rows(study, record, workdir)
  rows = [r for r in rows if r['values']['variant'] == 'heads=1']
  out = str(tmp_path / 'stopped')
  paths = ablation_report.write(workdir, study, record, rows, out)  # crashed: IndexError
  with open(paths[0]) as f:
    report = f.read()
  assert report.count('No plots: no run of this axis is complete yet.') == 2  # d_model, weighting
  assert os.path.exists(os.path.join(out, 'plots', 'ablation_heads.png'))
  assert not os.path.exists(os.path.join(out, 'plots', 'ablation_d_model.png'))
