"""Number of attention heads of the MNIST classifier (configs/mnist.py), grid, width fixed at 64.

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/sweeps/mnist_heads.py --workdir runs/sweep_mnist_heads

`configs/sweeps/mnist_heads.py:short` is the same grid on 600-step runs (about 1.4 epochs),
`:tiny` on 200-step runs (about 0.5 epochs), the one measured:

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/sweeps/mnist_heads.py:tiny --workdir runs/sweep_mnist_heads_tiny

Result (measured here for `:tiny` only, 02:53:31 -> 03:40:24 = 46.9 min wall, `uptime` load average
15-24 on the shared 2-core CPU; the full 4,000-step grid and `:short` did not fit the session):
validation / test accuracy after 200 steps, seed 0 -
  heads 1: 91.12% / 91.22%   heads 2: 92.36% / 92.37%
  heads 4: 92.50% / 92.50%   heads 8: 92.16% / 92.91%
One head is clearly behind; 2, 4 and 8 are within one seed's noise at this length (use
--config.seeds=3 to tell them apart). The same 144,714 parameters in every trial (d_k = 64 / heads).
"""

import ml_collections

from experiments.sweep import space, spec


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = spec.sweep_config(base='configs/mnist.py')
  c.name = 'mnist_heads' + (f'_{arg}' if arg else '')
  if arg == 'short':
    c.base.num_train_steps = 600
    c.base.warmup_steps = 60
    c.base.eval_every_steps = 200
    c.base.checkpoint_every_steps = 200
  elif arg == 'tiny':  # what fits this 2-core machine when it is shared (see the result)
    c.base.num_train_steps = 200
    c.base.warmup_steps = 20
    c.base.eval_every_steps = 100
    c.base.checkpoint_every_steps = 100
    c.base.log_every_steps = 50
  elif arg:
    raise ValueError(f'unknown variant {arg!r}; use configs/sweeps/mnist_heads.py[:short|:tiny]')
  c.space = space.build({'model.num_heads': space.grid(1, 2, 4, 8)})  # d_model 64: 64..8 per head
  c.objective = 'eval/accuracy'  # validation accuracy (5,000 held-out training images)
  c.direction = 'maximize'
  c.sampler = 'grid'
  c.num_trials = 0  # the whole grid
  c.seeds = 1
  c.pruner = 'none'
  return c
