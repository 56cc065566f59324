"""Compile once: runs that differ only in traced optimizer hyperparameters (experiments/core/optim.py)
lower to the same train step."""

import jax
import numpy as np
import pytest

from experiments.core import optim
from experiments.classification.task import ClassificationTask
from experiments.core.trainer import Trainer


def _train_step_hlo(config) -> str:
  task = ClassificationTask(config)
  task.setup(None)
  trainer = Trainer(config, task)
  state = trainer.abstract_state
  batch = task.train_source().batch(0)
  batch['weight'] = np.ones((len(batch['label']),), np.float32)
  with jax.set_mesh(trainer.mesh):
    return trainer._train_step.lower(state, batch).as_text()  # pylint: disable=protected-access


CHANGES = {
    'learning_rate': 7e-4,
    'weight_decay': 0.3,
    'adam_b1': 0.8,
    'adam_b2': 0.95,
    'adam_eps': 1e-6,
    'warmup_steps': 17,
    'grad_clip_norm': 0.5,
}


def test_traced_hyperparameters_do_not_change_the_compiled_step(tiny_digits_config, monkeypatch):
  base = _train_step_hlo(tiny_digits_config())
  assert _train_step_hlo(tiny_digits_config(CHANGES)) == base
  assert _train_step_hlo(tiny_digits_config(num_train_steps=31)) != base  # a static field
  # Without inject_hyperparams the values are compiled in (what each trial used to pay for).
  monkeypatch.setattr(
      optim, 'make_optimizer', lambda c: optim.optimizer_factory(c)(**optim.hyperparams(c))
  )
  monkeypatch.setattr(optim, 'learning_rate_at', lambda c, s, step: optim.make_schedule(c)(step))
  assert _train_step_hlo(tiny_digits_config(CHANGES)) != _train_step_hlo(tiny_digits_config())


def test_the_traced_schedule_equals_the_formula(tiny_digits_config):
  config = tiny_digits_config(learning_rate=0.1, warmup_steps=10, num_train_steps=110)
  tx = optim.make_optimizer(config)
  state = tx.init({'w': jax.numpy.ones((2, 2))})
  for step in (0, 5, 10, 60, 110):
    expected = 0.1 * step / 10 if step < 10 else 0.05 * (1 + np.cos(np.pi * (step - 10) / 100))
    got = float(optim.learning_rate_at(config, state, step))
    assert got == pytest.approx(expected, abs=1e-7)
