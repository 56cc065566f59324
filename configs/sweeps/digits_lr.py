"""Learning rate x weight decay of the digits classifier (configs/digits.py), TPE.

  python run.py sweep --config configs/sweeps/digits_lr.py --workdir runs/sweep_digits_lr

Result: (measurement pending)
"""

import ml_collections

from experiments.sweep import space, spec


def get_config() -> ml_collections.ConfigDict:
  c = spec.sweep_config(base='configs/digits.py')
  c.name = 'digits_lr'
  # A shorter schedule than the 2,500-step quickstart, so that a trial takes seconds.
  c.base.num_train_steps = 600
  c.base.eval_every_steps = 100
  c.base.checkpoint_every_steps = 100
  c.base.log_every_steps = 100
  c.space = space.build(
      {
          'learning_rate': space.log_float(1e-4, 3e-2),
          'weight_decay': space.log_float(1e-6, 1e-1),
      }
  )
  c.objective = 'eval/accuracy'  # validation accuracy (180 held-out training digits)
  c.direction = 'maximize'
  c.sampler = 'tpe'  # or 'random'
  c.sampler_seed = 0
  c.num_trials = 16
  c.seeds = 1
  c.pruner = 'median'
  c.pruner_warmup_steps = 300  # first pruning decision at step 300 (of 600)
  c.pruner_startup_trials = 4
  return c
