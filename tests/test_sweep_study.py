"""experiments/sweep/study.py: which changes of a sweep config stop a resume."""

import pytest

from experiments import configuration
from experiments.sweep import study


def _identity(**base):
  return {'objective': 'eval/accuracy', 'base': {**configuration.base_config().to_dict(), **base}}


def test_trainer_field_added_since_the_sweep_started_resumes_at_its_default():
  old = _identity()
  del old['base']['microbatches']  # sweep.json written before the field existed
  study._check_same(old, _identity(), 'sweep.json')  # the default: same sweep
  with pytest.raises(study.SweepChangedError, match=r'base.microbatches: 1 -> 4'):
    study._check_same(old, _identity(microbatches=4), 'sweep.json')


def test_a_changed_field_is_named():
  with pytest.raises(study.SweepChangedError, match=r'base.seed: 0 -> 5'):
    study._check_same(_identity(), _identity(seed=5), 'sweep.json')
