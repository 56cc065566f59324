"""Startup of a training run (build the trainer, initialise, first train step) with and without
the persistent compilation cache and compile-once (traced optimizer hyperparameters).

  python benchmarks/trial_startup.py --config configs/digits.py
  TRANSFORMER_DATA_DIR=../shared/data python benchmarks/trial_startup.py --config configs/mnist.py

Runs, each in a fresh process with its own empty cache directory:
  traced     3 "trials" differing in learning rate, weight decay, Adam b1 and warmup in one
             process, as a sweep worker runs them (compile-once: trials 2 and 3 are served by
             the cache)
  untraced   the same with the hyperparameters compiled in (the optimizer without
             optax.inject_hyperparams, as before compile-once; simulated here)
  cold/warm  one run with an empty cache, then the same run again in a new process (a resumed
             run, or a second run of the same shapes)
  cache off  TRANSFORMER_COMPILATION_CACHE=off
Prints seconds from trainer construction to the end of the first train step (the compile),
and from process start (imports and data loading included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def _one_process(config_path: str, trials: int, traced: bool) -> list[dict[str, float]]:
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.core import optim  # pylint: disable=g-import-not-at-top
  from experiments.sweep import spec  # pylint: disable=g-import-not-at-top
  from experiments.core import registry  # pylint: disable=g-import-not-at-top
  from experiments.core.trainer import Trainer  # pylint: disable=g-import-not-at-top

  if not traced:  # the hyperparameters as constants of the step, as before compile-once
    optim.make_optimizer = lambda c: optim.optimizer_factory(c)(**optim.hyperparams(c))
    optim.learning_rate_at = lambda c, opt_state, step: optim.make_schedule(c)(step)
  out = []
  for i in range(trials):
    config = spec.load_config_file(config_path)
    config.learning_rate *= 1.0 + 0.3 * i
    config.weight_decay *= 1.0 + 0.5 * i
    config.adam_b1 = 0.9 - 0.02 * i
    config.warmup_steps += 7 * i
    task = registry.task_class(config.task)(config)
    task.setup(None)
    batch = task.train_source().batch(0)  # data loading is not startup of the trainer
    t = time.perf_counter()
    trainer = Trainer(config, task)
    state = trainer.init_state()
    state, metrics = trainer.train_step(state, batch)
    jax.block_until_ready(metrics)
    now = time.perf_counter()
    out.append({'trainer_to_first_step_s': now - t, 'process_to_first_step_s': now - T0})
  return out


def _spawn(config: str, trials: int, traced: bool, cache: str) -> list[dict[str, float]]:
  env = dict(os.environ, TRANSFORMER_COMPILATION_CACHE=cache, TF_CPP_MIN_LOG_LEVEL='2')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  cmd = [sys.executable, __file__, '--config', config, '--trials', str(trials), '--child']
  cmd += [] if traced else ['--untraced']
  result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/digits.py')
  parser.add_argument('--trials', type=int, default=3)
  parser.add_argument('--untraced', action='store_true')
  parser.add_argument('--only_cache', action='store_true', help='only cold / warm cache')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(_one_process(args.config, args.trials, not args.untraced)))
    return
  print(f'{args.config}, load average {os.getloadavg()[0]:.1f} (uptime)')
  rows = {}
  if not args.only_cache:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
      rows['traced (compile-once)'] = _spawn(args.config, args.trials, True, a)
      rows['untraced'] = _spawn(args.config, args.trials, False, b)
  with tempfile.TemporaryDirectory() as c:
    rows['cold cache'] = _spawn(args.config, 1, True, c)
    rows['warm cache (same run again)'] = _spawn(args.config, 1, True, c)
  if not args.only_cache:
    rows['cache off'] = _spawn(args.config, 1, True, 'off')
  print(f'{"run":<30} {"trainer -> 1st step, per trial (s)":<40} process -> 1st step (s)')
  for name, trials in rows.items():
    per = ' '.join(f'{t["trainer_to_first_step_s"]:6.2f}' for t in trials)
    print(f'{name:<30} {per:<40} {trials[0]["process_to_first_step_s"]:6.2f}')
  later = lambda r: sum(t['trainer_to_first_step_s'] for t in r[1:]) / max(len(r) - 1, 1)
  if 'untraced' in rows:
    traced, untraced = later(rows['traced (compile-once)']), later(rows['untraced'])
    print(
        f'trials 2..{args.trials}: compile-once {traced:.2f} s vs untraced {untraced:.2f} s '
        f'per trial startup ({untraced / traced:.1f}x)'
    )
  cold = rows['cold cache'][0]['trainer_to_first_step_s']
  warm = rows['warm cache (same run again)'][0]['trainer_to_first_step_s']
  print(
      f'cold cache {cold:.2f} s vs warm cache {warm:.2f} s to the first step ({cold / warm:.1f}x)'
  )


if __name__ == '__main__':
  main()
