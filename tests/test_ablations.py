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
    ('heads', 'multi30k'),
    ('heads', 'wmt14'),
    ('attention', 'mnist'),
    ('attention', 'multi30k'),
    ('attention', 'wmt14'),
    ('scaling', 'multi30k'),
    ('scaling', 'wmt14'),
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

  config = _ablation(name, arg)
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


def test_lm_sizes_span_30x_in_non_embedding_parameters():
  """12 d^2 L per pre-LN block with d_ff = 4 d (4 d^2 attention + 8 d^2 FFN), biases aside."""
  table = _table(_ablation('scaling', 'lm'))
  base = _ablation('scaling', 'lm').base.model
  sizes = [(base.d_model, base.num_layers)]
  sizes += [(v['model.d_model'], v['model.num_layers']) for n, v in table.items() if n != 'base']
  approx = sorted(12 * d * d * n for d, n in sizes)
  assert len(set(approx)) >= 6 and approx[-1] / approx[0] >= 30


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


def test_paper_reference_and_direction():
  from experiments.analysis import ablation_report as ar  # pylint: disable=g-import-not-at-top

  # Same row when the paper has it.
  assert ar.paper_reference('heads=4', 'heads', 4, 8)[1].bleu == 25.5
  # Our N=1 vs base 2 (shallower): the paper's nearest shallower row than its N=6 is N=4.
  name, row = ar.paper_reference('N=1', 'N', 1, 2)
  assert (name, row.bleu) == ('N=4', 25.3)
  # Paper: N=4 has lower BLEU than N=6, i.e. BLEU rises with depth. Ours falling with less depth
  # is the same direction; rising is not.
  assert ar._direction('N', 1, 2, -0.5, (name, row), ppl=False) == 'yes'
  assert ar._direction('N', 1, 2, +0.5, (name, row), ppl=False) == 'no'
  # Categorical rows compare signs directly; heads=16 has the base's BLEU.
  learned = ar.paper_reference('positional=learned', 'positional', 'learned', 'sinusoidal')
  assert ar._direction('positional', 'learned', 'sinusoidal', -1.0, learned, ppl=False) == 'yes'
  h16 = ar.paper_reference('heads=16', 'heads', 16, 8)
  assert ar._direction('heads', 16, 8, 0.1, h16, ppl=False) == 'paper: no change'
  assert ar.paper_reference('score=dot', 'score', 'dot', 'scaled_dot') is None


def test_exceeds_spread():
  from experiments.analysis import ablation_report as ar  # pylint: disable=g-import-not-at-top

  a, b = [1.0, 1.1, 0.9], [2.0, 2.1, 1.9]  # means 1 and 2, std 0.1: se = 0.0816
  assert ar._exceeds_spread(a, b) == 'yes'
  assert ar._exceeds_spread(a, [1.1, 1.2, 1.0]) == 'no'  # |Δ| 0.1 < 2 x 0.0816
  assert ar._exceeds_spread([1.0], b) == '–'


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
  # one panel per variant in the tables' order (base, then each axis), whatever the trial order
  assert panels == [['base', 'heads=1', 'd_model=8', 'weighting=local,w=1']]
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
  assert '| 5.29 | 24.9 |' in heads_1  # the paper's row (A) h=1
  assert re.search(r'\| (yes|no) \| (yes|no) \|$', heads_1)
  base = [l for l in report.splitlines() if l.startswith('| 2 (base) |')][0]
  assert '| 4.92 | 25.8 |' in base
  assert 'No power-law fit' in report  # 2 sizes here (test_scaling_section: the fit)
  for png in ('ablation_heads', 'ablation_curves_heads', 'ablation_attention'):
    assert os.path.getsize(os.path.join(out, 'plots', f'{png}.png')) > 1000
    assert f'plots/{png}.png' in report


def test_report_of_a_plain_sweep_is_an_error(tmp_path, capsys):
  from experiments.analysis import ablation_report  # pylint: disable=g-import-not-at-top

  assert ablation_report.main(['--workdir', str(tmp_path)]) == 1
  assert 'sweep.json' in capsys.readouterr().err


def _size_runs(tmp_path, monkeypatch, sizes, law):
  """Fake runs (2 seeds per size) whose best validation nll is law(n), seed 1 0.01 higher."""
  from experiments.analysis import ablation_report as ar  # pylint: disable=g-import-not-at-top

  groups = {}
  for name, n in sizes.items():
    rows = []
    for seed in range(2):
      workdir = tmp_path / f'{name}_{seed}'
      workdir.mkdir()
      loss = law(n) + 0.01 * seed
      lines = [{'step': 5, 'eval/nll': loss + 1}, {'step': 10, 'eval/nll': loss}]
      (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
      rows.append({'workdir': str(workdir)})
    groups[name] = {'rows': rows}
  counts = {str(tmp_path / f'{k}_0'): n for k, n in sizes.items()}
  monkeypatch.setattr(
      ar,
      'parameter_counts',
      lambda w: {'non_embedding': counts[w], 'total': counts[w] + 500},
  )
  return groups


def test_scaling_section_fits_the_runs(tmp_path, monkeypatch):
  """Runs of 4 sizes whose best validation nll follows L = 2 + 50 N^-0.5 (+ 0.01 for seed 1):
  the fit in the report recovers the law, over both parameter counts."""
  from experiments.analysis import ablation_report as ar  # pylint: disable=g-import-not-at-top

  sizes = {'base': 1_000, 'size=b': 4_000, 'size=c': 16_000, 'size=d': 64_000}
  groups = _size_runs(tmp_path, monkeypatch, sizes, lambda n: 2 + 50 * n**-0.5)
  lines, plots = ar.scaling_section(
      list(sizes), groups, 'lm', str(tmp_path / 'fit.png'), num_bootstrap=10
  )
  text = '\n'.join(lines)
  assert '| size=d | 64,000 | 64,500 | 2 |' in text
  (fit,) = [l for l in lines if l.startswith('| non_embedding |')]
  e, a, alpha = (float(x) for x in fit.split('|')[2:5])
  assert abs(e - 2) < 0.05 and abs(alpha - 0.5) < 0.05 and abs(a - 50) < 5
  assert 'Non-embedding sizes span 64.0x' in text
  assert os.path.getsize(plots[0]) > 1000


def test_scaling_section_skips_the_fit_when_the_loss_rises_with_size(tmp_path, monkeypatch):
  """Table 3 (C)-like runs: the largest model is worse than the base beyond the seed spread
  (undertrained), so no power law with alpha > 0 fits; a rise within the spread is noise."""
  from experiments.analysis import ablation_report as ar  # pylint: disable=g-import-not-at-top

  sizes = {'base': 1_000, 'size=b': 4_000, 'size=c': 16_000, 'size=d': 64_000}
  losses = {1_000: 3.0, 4_000: 2.8, 16_000: 2.805, 64_000: 3.1}  # 2.805: within the 0.007 std
  groups = _size_runs(tmp_path, monkeypatch, sizes, losses.get)
  lines, plots = ar.scaling_section(
      list(sizes), groups, 'lm', str(tmp_path / 'fit.png'), num_bootstrap=10
  )
  text = '\n'.join(lines)
  assert plots == [] and '| non_embedding |' not in text
  assert 'No power-law fit: the mean loss does not fall with size' in text
  assert '2.81 at 16,000 non-embedding parameters, 3.105 at 64,000' in text


def test_paper_base_row_only_on_table_3_axes():
  from experiments.analysis import ablation_report  # pylint: disable=g-import-not-at-top
  from experiments.sweep import variants  # pylint: disable=g-import-not-at-top

  group = {'objective': [0.5, 0.6], 'metrics': {}, 'rows': [{'num_params': 10}]}
  groups = {variants.BASE: group, 'score=dot': group, 'heads=1': group}
  for axis, name, value, paper in (
      ('score', 'score=dot', 'dot', False),
      ('heads', 'heads=1', 1, True),
  ):
    info = {'base_value': 8 if axis == 'heads' else 'scaled_dot', 'variants': [(name, value)]}
    lines = ablation_report.axis_table(axis, info, groups, 'eval/accuracy', ppl=False)
    (base,) = [l for l in lines if '(base)' in l]
    assert ('| 4.92 | 25.8 |' in base) == paper
