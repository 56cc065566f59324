"""The Multi30k >= 41 BLEU recipes (issue 22): configs/translation_multi30k.py:long and :finetune
and the regularisation sweep validate as full experiments and use averaging and init_from as
their docstrings say. (Averaging and init_from themselves: tests/test_averaging.py and
tests/test_init_from.py.)"""

from __future__ import annotations

import itertools

import pytest

from experiments.core import averaging, configuration


def test_every_variant_validates_and_the_recipes_average_and_init_from(load_config):
  default = load_config('translation_multi30k')
  for variant in ('tok', 'raw', 'rnn', 'long', 'finetune'):
    configuration.validate(load_config('translation_multi30k', variant), num_devices=1)
  assert default.average_last_checkpoints == 0 and default.init_from == ''
  long = load_config('translation_multi30k', 'long')
  assert long.num_train_steps == 2 * default.num_train_steps and long.init_from == ''
  finetune = load_config('translation_multi30k', 'finetune')
  assert finetune.init_from == 'runs/multi30k:best'  # the default config's documented workdir
  assert finetune.learning_rate < default.learning_rate
  for recipe in (long, finetune):
    # The mean of the last 5 checkpoints, all kept, spread over the last third of the schedule.
    assert recipe.average_last_checkpoints == 5 <= recipe.keep_checkpoints
    assert averaging.checkpoints_saved(recipe) >= 5
    assert 4 * recipe.checkpoint_every_steps <= recipe.num_train_steps // 3  # 4 intervals
    assert recipe.data.variant == 'tok'
    # Only the schedule, averaging and init_from differ from the default: same model and data.
    assert recipe.model.to_dict() == default.model.to_dict()
    assert recipe.data.to_dict() == default.data.to_dict()


def test_unknown_variant_names_the_choices(load_config):
  with pytest.raises(ValueError, match='tok|raw|rnn|long|finetune'):
    load_config('translation_multi30k', 'longer')


def test_regularisation_sweep_is_the_grid_of_valid_experiments():
  from experiments.sweep import space, spec  # pylint: disable=g-import-not-at-top

  config = spec.load_config_file('configs/sweeps/multi30k_regularisation.py')
  dims = spec.validate(config, 1)
  assert spec.total_runs(config, dims) == 3 * 2 * 3
  grid = space.grid_search_space(dims)
  assert set(grid) == {'model.dropout_rate', 'label_smoothing', 'learning_rate'}
  for values in itertools.product(*grid.values()):  # every cell is a valid experiment
    point = config.base.copy_and_resolve_references()
    for field, value in zip(grid, values):
      node = point
      *parents, leaf = field.split('.')
      for p in parents:
        node = node[p]
      node[leaf] = value
    configuration.validate(point, num_devices=1)
