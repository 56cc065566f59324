"""experiments/sweep/study.py: which changes of a sweep config stop a resume."""

import pytest

from experiments.core import configuration
from experiments.sweep import study


def _identity(**base):
  return {'objective': 'eval/accuracy', 'base': {**configuration.base_config().to_dict(), **base}}


def test_trainer_field_added_since_the_sweep_started_resumes_at_its_default():
  old = _identity()
  del old['base']['microbatches']  # sweep.json written before the field existed
  study.check_same(old, _identity(), 'sweep.json')  # the default: same sweep
  with pytest.raises(study.SweepChangedError, match=r'base.microbatches: 1 -> 4'):
    study.check_same(old, _identity(microbatches=4), 'sweep.json')


def test_a_changed_field_is_named():
  with pytest.raises(study.SweepChangedError, match=r'base.seed: 0 -> 5'):
    study.check_same(_identity(), _identity(seed=5), 'sweep.json')


def test_grid_runs_every_point_once_before_the_next_seed():
  import ml_collections  # pylint: disable=g-import-not-at-top
  import optuna  # pylint: disable=g-import-not-at-top

  from experiments.sweep import space  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(
      {'sampler': 'grid', 'seeds': 3, 'sampler_seed': 0, 'base': {'seed': 0, 'learning_rate': 0.1}}
  )
  dims = space.parse(
      space.build({'learning_rate': space.grid(1e-3, 3e-3, 1e-2, 3e-2)}), config.base
  )
  sampler = study.make_sampler(config, dims)
  s = optuna.create_study(sampler=sampler)
  order = []
  for _ in range(12):
    t = s.ask()
    lr = t.suggest_categorical('learning_rate', [1e-3, 3e-3, 1e-2, 3e-2])
    seed = t.suggest_categorical('seed', [0, 1, 2])
    s.tell(t, 0.0)
    order.append((seed, lr))
  assert [seed for seed, _ in order] == [0] * 4 + [1] * 4 + [2] * 4
  assert sorted(order) == sorted((s_, lr) for s_ in (0, 1, 2) for lr in (1e-3, 3e-3, 1e-2, 3e-2))
