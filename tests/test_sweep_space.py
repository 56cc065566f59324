"""experiments/sweep/space.py and spec.py: checks before any trial runs; points; identity."""

import optuna
import pytest

from experiments.sweep import space, spec, study
from experiments.sweep.space import SpaceError


@pytest.fixture
def base(load_config):
  return load_config('digits')


def test_entries_become_dimensions_of_the_base_fields(base):
  s = space.build(
      {
          'learning_rate': space.log_float(1e-4, 1e-2),
          'model.num_heads': space.grid(1, 2, 4),
          'model.num_layers': space.int_range(1, 3),
          'model.norm': space.categorical('pre', 'post'),
      }
  )
  dims = {d.field: d for d in space.parse(s, base)}
  assert set(dims) == {'learning_rate', 'model.num_heads', 'model.num_layers', 'model.norm'}
  assert dims['learning_rate'].log and dims['learning_rate'].grid_values() is None
  assert dims['model.num_layers'].grid_values() == [1, 2, 3]
  grid = space.grid_search_space([dims['model.num_heads'], dims['model.norm']])
  assert grid == {'model.num_heads': [1, 2, 4], 'model.norm': ['pre', 'post']}


@pytest.mark.parametrize(
    'entries, message',
    [
        ({}, 'space: is empty'),
        ({'learning_rat': space.grid(1e-3)}, "space.learning_rat: no field 'learning_rat'"),
        ({'model.heads': space.grid(2)}, "space.model.heads: no field 'heads' in model"),
        ({'model': space.grid(2)}, 'space.model: is a section'),
        ({'model.num_heads': space.grid(2, 2.5)}, 'space.model.num_heads: value 2.5 (float)'),
        ({'model.norm': space.categorical('pre', 3)}, 'space.model.norm: value 3 (int)'),
        ({'model.num_heads': space.float_range(1, 4)}, 'needs a float field'),
        ({'learning_rate': space.float_range(1e-2, 1e-3)}, 'low < high'),
        ({'weight_decay': space.log_float(0.0, 1e-2)}, 'log range needs low > 0'),
        ({'model.num_heads': space.grid()}, 'grid has no values'),
        ({'model.num_heads': space.grid(2, 2)}, 'values repeat'),
        ({'seed': space.grid(0, 1)}, "space.seed: sweep seeds with the sweep's `seeds`"),
    ],
)
def test_bad_spaces_name_the_entry(base, entries, message):
  with pytest.raises(SpaceError, match=None) as e:
    space.parse(space.build(entries), base)
  assert message in str(e.value)


def test_grid_sweep_needs_discrete_values(base):
  dims = space.parse(space.build({'learning_rate': space.log_float(1e-4, 1e-2)}), base)
  with pytest.raises(SpaceError, match='grid sweep needs discrete values'):
    space.grid_search_space(dims)


def test_suggest_and_apply_make_the_point_config(base):
  dims = space.parse(
      space.build(
          {'learning_rate': space.log_float(1e-4, 1e-2), 'model.num_heads': space.grid(1, 8)}
      ),
      base,
  )
  trial = optuna.trial.FixedTrial({'learning_rate': 5e-4, 'model.num_heads': 8})
  values = space.suggest(trial, dims)
  config = space.apply(base, values)
  assert (config.learning_rate, config.model.num_heads) == (5e-4, 8)
  assert (base.learning_rate, base.model.num_heads) == (3e-3, 4)  # the base is untouched


def _sweep(**fields):
  c = spec.sweep_config(base='configs/digits.py')
  c.space = space.build({'model.num_heads': space.grid(1, 2, 4)})
  for k, v in fields.items():
    c[k] = v
  return c


@pytest.mark.parametrize(
    'fields, message',
    [
        ({'sampler': 'bayes'}, 'config.sampler'),
        ({'pruner': 'hyperband'}, 'config.pruner'),
        ({'direction': 'up'}, 'config.direction'),
        ({'objective': 'accuracy'}, 'config.objective'),
        ({'seeds': 0}, 'config.seeds'),
        ({'sampler': 'tpe', 'num_trials': 0}, 'config.num_trials'),
    ],
)
def test_bad_sweep_fields(fields, message):
  with pytest.raises(spec.SweepConfigError, match=message):
    spec.validate(_sweep(**fields), 1)


def test_an_invalid_base_is_an_error_naming_its_field():
  c = _sweep()
  c.base.batch_size = 0
  with pytest.raises(spec.SweepConfigError, match='config.base.batch_size'):
    spec.validate(c, 1)


def test_runs_and_identity():
  c = _sweep(sampler='grid', num_trials=0, seeds=2)
  dims = spec.validate(c, 1)
  assert spec.total_runs(c, dims) == 6
  assert spec.seeds(c) == [0, 1]
  ident = spec.identity(c)
  assert 'num_trials' not in ident and 'data_dir' not in ident['base']['data']


def test_objective_is_the_best_logged_value():
  history = [
      {'step': 10, 'eval/accuracy': 0.5, 'eval/loss': 2.0},
      {'step': 20, 'eval/accuracy': 0.7, 'eval/loss': 1.0},
      {'step': 30, 'eval/accuracy': 0.7, 'eval/loss': 1.5},
      {'step': 30, 'eval/accuracy': 0.99, 'checkpoint': 'best'},  # a `run.py eval` line
  ]
  assert study.objective_from_history(history, 'eval/accuracy', 'maximize') == (0.7, 20)
  assert study.objective_from_history(history, 'eval/loss', 'minimize') == (1.0, 20)
  assert study.objective_from_history(history, 'eval/bleu', 'maximize') is None
