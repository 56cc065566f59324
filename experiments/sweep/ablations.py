"""Ablation sweeps (configs/ablations/*.py): one base model per dataset, each axis varied alone.

  c = ablations.sweep('mnist', {'heads=1': {'model.num_heads': 1}, ...})

`BASES` are the base experiments: a CPU base per dataset (small model, short schedule, sized to
finish an ablation here in about an hour of one core) and the paper's base model on WMT14 for
accelerators. The paper's reference numbers (Vaswani et al. 2017, Table 3) are data:
configs/ablations/vaswani2017_table3.json, read by experiments/analysis/paper.py.
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

from experiments.sweep import spec, tune_compare, variants


def _mnist() -> ml_collections.ConfigDict:
  c = spec.load_config_file('configs/mnist.py')
  c.num_train_steps = 400  # ~0.9 epochs of batch 128: short, so that effects stay visible
  c.warmup_steps = 40
  c.log_every_steps = 50
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  c.keep_checkpoints = 1
  c.model.num_layers = 2
  c.model.num_heads = 8  # d_model 64: d_k 8
  c.model.positional = 'sinusoidal'  # the paper's base (its (E) row swaps it)
  c.model.dropout_rate = 0.1  # the paper's P_drop (its (D) rows vary it)
  c.label_smoothing = 0.1  # the paper's eps_ls
  return c


def _mnist_converged() -> ml_collections.ConfigDict:
  """The MNIST base trained to the end of a longer schedule, for tuned comparisons: 16 tokens
  (configs/mnist.py:fast's 8x8 patches, ~4x cheaper a step), 2,000 steps (4.65 epochs, ~2.4 min a
  run on one core), a full validation evaluation every 200 steps (10 points of learning curve),
  early stopping after 3 evaluations without a 0.001-nat gain in validation loss."""
  c = _mnist()
  c.model.patch_size = 8
  c.num_train_steps = 2000
  c.warmup_steps = 100
  c.log_every_steps = 100
  c.eval_every_steps = 200
  c.checkpoint_every_steps = 1000
  c.early_stopping_patience = 3
  c.early_stopping_min_delta = 0.001
  return c


def _multi30k() -> ml_collections.ConfigDict:
  c = spec.load_config_file('configs/translation_multi30k.py')
  c.num_train_steps = 400  # ~1.4 epochs of 2,048-token batches: ~5 min a run on one core
  c.warmup_steps = 80
  c.log_every_steps = 50
  c.eval_every_steps = 400  # one validation decode, at the end (the objective)
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 1
  c.data.tokens_per_batch = 2048
  c.model.d_model = 128
  c.model.num_heads = 8  # d_k 16
  c.model.num_encoder_layers = 2
  c.model.num_decoder_layers = 2
  c.model.d_ff = 512  # 4 x d_model as in the paper
  c.model.dropout_rate = 0.1
  c.label_smoothing = 0.1
  c.decoding.beam_size = 1  # greedy test decoding: CPU time goes to training
  c.final_test_splits = 'test_2016'
  return c


def _multi30k_converged() -> ml_collections.ConfigDict:
  """The Multi30k base trained to the end of a 1,500-step cosine schedule, for tuned comparisons
  (issue 21: about 20 CPU-minutes a run): validation loss every 100 steps (15 points of learning
  curve; early stopping after 3 without a 0.002-nat gain), greedy validation BLEU every 500 steps
  (the objective: the best of the three). Seed 0 at 5e-3 took 17 min on one core, its validation
  loss flat at the end of the schedule (configs/ablations/heads.py, multi30k-tuned)."""
  c = _multi30k()
  c.num_train_steps = 1500
  c.warmup_steps = 150
  c.log_every_steps = 100
  c.eval_loss_every_steps = 100
  c.early_stopping_patience = 3
  c.early_stopping_min_delta = 0.002
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  return c


def _multi30k_full() -> ml_collections.ConfigDict:
  """configs/translation_multi30k.py as it is (3,000 steps, greedy validation BLEU every 1,000
  steps, beam-4 test_2016/2017/2018): comparisons of whole models at the converged recipe."""
  return spec.load_config_file('configs/translation_multi30k.py')


def _wmt14() -> ml_collections.ConfigDict:
  return spec.load_config_file('configs/translation_wmt14.py')  # the paper's base model


def _lm() -> ml_collections.ConfigDict:
  c = spec.load_config_file('configs/lm_multi30k.py:en')
  c.num_train_steps = 500
  c.warmup_steps = 50
  c.log_every_steps = 50
  c.eval_every_steps = 250
  c.checkpoint_every_steps = 250
  c.keep_checkpoints = 1
  c.data.vocab_size = 4000
  c.final_test_splits = 'test_2016'
  return c


# name -> (base experiment, objective, direction)
BASES: dict[str, tuple[Callable[[], ml_collections.ConfigDict], str, str]] = {
    'mnist': (_mnist, 'eval/accuracy', 'maximize'),
    'mnist-converged': (_mnist_converged, 'eval/accuracy', 'maximize'),
    'multi30k': (_multi30k, 'eval/bleu', 'maximize'),
    'multi30k-converged': (_multi30k_converged, 'eval/bleu', 'maximize'),
    'multi30k-full': (_multi30k_full, 'eval/bleu', 'maximize'),
    'wmt14': (_wmt14, 'eval/bleu', 'maximize'),
    'lm': (_lm, 'eval/perplexity', 'minimize'),
}


def sweep(
    base: str, points: dict[str, dict[str, Any]], name: str, seeds: int = 3
) -> ml_collections.ConfigDict:
  """The sweep config of an ablation: grid over `points` (plus 'base') on base experiment
  `base` (a key of BASES), `seeds` runs per point."""
  if base not in BASES:
    raise ValueError(f'unknown ablation base {base!r}; choose one of {sorted(BASES)}')
  make, objective, direction = BASES[base]
  c = spec.sweep_config(make())
  c.name = name
  c.base_source = base
  c.objective = objective
  c.direction = direction
  c.sampler = 'grid'
  c.num_trials = 0  # every variant
  c.seeds = seeds
  c.pruner = 'none'
  return variants.attach(c, {variants.BASE: {}, **points})


# Bases of tuned comparisons (tune_compare.tuned): base -> (learning rates tried per variant with
# one seed, seeds per variant at its chosen rate). Runs under ~5 CPU-minutes get 5 seeds.
TUNED: dict[str, tuple[tuple[float, ...], int]] = {
    'mnist-converged': ((1e-3, 3e-3, 1e-2), 5),
    'multi30k-converged': ((2e-3, 5e-3, 1e-2), 3),  # ~20 CPU-minutes a run: 3 seeds
}


# The configs' variant names of tuned ablations ('heads.py:mnist-tuned') -> their base in TUNED.
TUNED_VARIANTS = {'mnist-tuned': 'mnist-converged', 'multi30k-tuned': 'multi30k-converged'}


def tuned_sweep(
    base: str, points: dict[str, dict[str, Any]], name: str
) -> ml_collections.ConfigDict:
  """`sweep` on a base of TUNED, tuning the learning rate per variant before comparing."""
  rates, seeds = TUNED[base]
  return tune_compare.tuned(sweep(base, points, name, seeds=seeds), rates)


def heads_points(values: tuple[int, ...], base_heads: int) -> dict[str, dict[str, Any]]:
  """Table 3 (A): heads at fixed d_model (d_k = d_model / h); the base value is 'base'."""
  return {f'heads={h}': {'model.num_heads': h} for h in values if h != base_heads}


def regularisation_points(base: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """Table 3 (D)/(E): dropout, label smoothing (0 / 0.1 / 0.2) and the positional encoding."""
  out: dict[str, dict[str, Any]] = {}
  for p in (0.0, 0.1, 0.2):
    if p != base.model.dropout_rate:
      out[f'dropout={p}'] = {'model.dropout_rate': p}
  for eps in (0.0, 0.1, 0.2):
    if eps != base.label_smoothing:
      out[f'label_smoothing={eps}'] = {'label_smoothing': eps}
  for pos in ('sinusoidal', 'learned', 'rope'):
    if pos != base.model.positional:
      out[f'positional={pos}'] = {'model.positional': pos}
  return out


def make_base(base: str) -> ml_collections.ConfigDict:
  """The base experiment of `base` (a key of BASES)."""
  return BASES[base][0]()
