"""Dropout x label smoothing x learning rate of the Multi30k Transformer
(configs/translation_multi30k.py) on a short schedule: the tuning step of the >= 41 BLEU
recipes (issue 22), grid, one seed, greedy validation BLEU.

  TRANSFORMER_DATA_DIR=../shared/data python run.py sweep --config configs/sweeps/multi30k_regularisation.py --workdir runs/sweep_multi30k_regularisation

Then train a recipe at the best cell, e.g.
  --config.model.dropout_rate=D --config.label_smoothing=S --config.learning_rate=R
on configs/translation_multi30k.py:long or :finetune (:finetune's own peak rate is 1e-3: keep it).

18 runs of 1,000 steps (the default's 3,000-step cosine schedule shortened; validation BLEU at
steps 500 and 1,000, the objective is the better). NOT yet run. Estimate, not a measurement: the
default config trained at ~0.46 steps/s on one core of the development CPU, so ~36 min a run,
~11 h for the grid on one core; `--workers 2` runs two at a time where there are two cores.
A short schedule favours little regularisation (docs/ablations/README.md: dropout 0 won at 400
steps): read the winner as a hint for the long schedule, not as its optimum.
"""

import ml_collections

from experiments.sweep import space, spec


def get_config() -> ml_collections.ConfigDict:
  c = spec.sweep_config(base='configs/translation_multi30k.py')
  c.name = 'multi30k_regularisation'
  c.base.num_train_steps = 1000
  c.base.warmup_steps = 200
  c.base.eval_every_steps = 500
  c.base.checkpoint_every_steps = 500
  c.base.keep_checkpoints = 1
  c.base.final_test_splits = 'test_2016'
  c.space = space.build(
      {
          'model.dropout_rate': space.grid(0.1, 0.2, 0.3),
          'label_smoothing': space.grid(0.1, 0.2),
          'learning_rate': space.grid(3e-3, 5e-3, 7e-3),
      }
  )
  c.objective = 'eval/bleu'  # greedy validation BLEU
  c.direction = 'maximize'
  c.sampler = 'grid'
  c.num_trials = 0  # the whole grid
  c.seeds = 1
  c.pruner = 'none'
  return c
