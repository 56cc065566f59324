"""experiments/core/optim.py: schedules against the formulas, optimizer wiring."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.core import configuration, optim


def _config(**kw):
  c = configuration.base_config()
  c.model = {'d_model': 512}
  for k, v in kw.items():
    c[k] = v
  return c


def test_noam_matches_the_paper_formula():
  schedule = optim.make_schedule(_config(schedule='noam', learning_rate=1.0, warmup_steps=4000))
  for step in [0, 1, 999, 3999, 4000, 10_000, 99_999]:
    n = step + 1
    expected = 512**-0.5 * min(n**-0.5, n * 4000**-1.5)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
  # Peak at the end of warmup.
  values = [float(schedule(s)) for s in range(3990, 4010)]
  assert max(values) == pytest.approx(float(schedule(3999)), rel=1e-6)


def test_cosine_warmup_and_decay():
  schedule = optim.make_schedule(
      _config(schedule='cosine', learning_rate=0.1, warmup_steps=10, num_train_steps=110)
  )
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.05)
  assert float(schedule(10)) == pytest.approx(0.1)
  assert float(schedule(60)) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-5)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)


def test_constant_with_warmup():
  schedule = optim.make_schedule(_config(schedule='constant', learning_rate=0.2, warmup_steps=4))
  assert [round(float(schedule(s)), 6) for s in (0, 2, 4, 100)] == [0.0, 0.1, 0.2, 0.2]


def test_adamw_decays_matrices_only_and_clips():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  grads = jax.tree.map(jnp.zeros_like, params)
  tx = optim.make_optimizer(
      _config(
          optimizer='adamw',
          schedule='constant',
          warmup_steps=0,
          learning_rate=0.1,
          weight_decay=0.5,
      )
  )
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['kernel'], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates['bias'], np.zeros(2))
  # Global-norm clipping (SGD, lr 1): the update of a huge gradient has norm 1.
  tx = optim.make_optimizer(
      _config(
          optimizer='sgd',
          momentum=0.0,
          schedule='constant',
          warmup_steps=0,
          learning_rate=1.0,
          grad_clip_norm=1.0,
      )
  )
  big = {'kernel': jnp.full((2, 2), 100.0), 'bias': jnp.zeros((2,))}
  updates, _ = tx.update(big, tx.init(params), params)
  assert float(optax_global_norm(updates)) == pytest.approx(1.0, rel=1e-5)


def optax_global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))


def test_unknown_names_raise():
  with pytest.raises(ValueError, match='schedule'):
    optim.make_schedule(_config(schedule='linear'))
  with pytest.raises(ValueError, match='optimizer'):
    optim.make_optimizer(_config(optimizer='lamb'))
