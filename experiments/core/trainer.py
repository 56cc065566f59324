"""The one trainer: compiled, sharded train/eval steps around a Task (experiments/core/task.py).

`Trainer` holds the model, optimizer, mesh and jitted steps (no I/O);
`train_and_evaluate` is the loop with checkpoints, logging, exact resume and signals
(experiments/core/loop.py); `restore_for_inference` is what task verbs (classify,
translate) use.

Randomness: key = PRNGKey(config.seed); (init_key, dropout_key) = split(key);
the dropout key of step s is fold_in(dropout_key, s). The data order is a pure
function of (seed, step) (experiments/core/data.py). Hence resuming from a checkpoint of
step s replays steps s, s+1, ... exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.core import compilation_cache
from experiments.core import data as data_lib
from experiments.parallel import distributed
from experiments.core import optim
from experiments.parallel import sharding
from experiments.core.task import Batch, Task


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 [], optimizer steps done
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 [2], base dropout key; step s uses fold_in(rng, s)


class Trainer:
  """Compiled train and eval steps of one task on one device mesh."""

  def __init__(self, config: ml_collections.ConfigDict, task: Task):
    self.config = config
    self.task = task
    self.mesh = sharding.make_mesh(config)
    self.model = task.build_model()
    compilation_cache.setup()
    self.tx = optim.make_optimizer(config)

    abstract = jax.eval_shape(self._init_state)
    self.state_sharding = sharding.param_shardings(self.mesh, abstract)
    # The restore target: shapes, dtypes and shardings of every leaf.
    self.abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract,
        self.state_sharding,
    )
    batch_sharding = sharding.batch_sharding(self.mesh)
    replicated = sharding.replicated(self.mesh)
    self._init = jax.jit(self._init_state, out_shardings=self.state_sharding)
    self._compiled_init = None
    self._train_step = jax.jit(
        self._train_step_fn,
        in_shardings=(self.state_sharding, batch_sharding),
        out_shardings=(self.state_sharding, replicated),
        donate_argnums=0,
    )
    self._eval_step = jax.jit(
        self._eval_step_fn,
        in_shardings=(self.state_sharding.params, batch_sharding),
        out_shardings=replicated,
    )

  # ---- pure functions (traced) -------------------------------------------------------

  def _init_state(self) -> TrainState:
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(self.config.seed))
    variables = self.model.init(
        {'params': init_key, 'dropout': init_key}, *self.task.dummy_inputs(), train=False
    )
    params = variables['params']
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=self.tx.init(params),
        rng=dropout_key,
    )

  def _train_step_fn(
      self, state: TrainState, batch: Batch
  ) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(state.rng, state.step)
    if self.config.get('microbatches', 1) > 1:
      (loss, metrics), grads = self._microbatched_grads(state.params, batch, rng)
    else:

      def loss_fn(params):
        return self.task.loss_and_metrics(self.model, params, batch, rng=rng, train=True)

      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {f'train/{k}': s / jnp.maximum(c, 1e-9) for k, (s, c) in metrics.items()}
    out['train/loss'] = loss
    out['train/grad_norm'] = optax.global_norm(grads)
    # From the traced hyperparameters: the step must not compile the learning rate in.
    out['train/learning_rate'] = optim.learning_rate_at(self.config, state.opt_state, state.step)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=state.rng), out

  def _microbatched_grads(self, params: Any, batch: Batch, rng: jax.Array):
    """((loss, metrics), grads) of the whole batch, accumulated over `config.microbatches`
    slices in a lax.scan. Slice i holds rows i, i + m, i + 2m, ... (each device keeps its own
    rows) and uses the dropout key fold_in(rng, i). The loss must be the mean the task's
    metrics['loss'] = (sum, count) describes: the slices are weighted by their counts."""
    m = self.config.microbatches

    def slices(x):  # [b, ...] -> [m, b / m, ...]
      return jnp.moveaxis(x.reshape(x.shape[0] // m, m, *x.shape[1:]), 1, 0)

    def one(i, piece):
      def loss_sum(p):
        loss, metrics = self.task.loss_and_metrics(
            self.model, p, piece, rng=jax.random.fold_in(rng, i), train=True
        )
        count = metrics['loss'][1]
        return loss * count, (count, metrics)

      (total, (count, metrics)), grads = jax.value_and_grad(loss_sum, has_aux=True)(params)
      return total, count, metrics, grads

    def body(acc, inputs):
      return jax.tree.map(jnp.add, acc, one(*inputs)), None

    pieces = jax.tree.map(slices, dict(batch))
    first = jax.tree.map(lambda x: x[0], pieces)
    zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(one, jnp.int32(0), first)
    )
    (total, count, metrics, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(m), pieces))
    count = jnp.maximum(count, 1e-9)
    return (total / count, metrics), jax.tree.map(lambda g: g / count, grads)

  def _eval_step_fn(self, params: Any, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
    _, metrics = self.task.loss_and_metrics(self.model, params, batch, rng=None, train=False)
    return {
        k: (jnp.asarray(s, jnp.float32), jnp.asarray(c, jnp.float32))
        for k, (s, c) in metrics.items()
    }

  # ---- host-side API ------------------------------------------------------------------

  def init_state(self) -> TrainState:
    with jax.set_mesh(self.mesh):
      if self._compiled_init is None:
        # Runs once: on CPU, skipping LLVM optimisation compiles the random initialisers
        # ~4x faster (the values stay a deterministic function of the seed).
        options = {'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None
        self._compiled_init = self._init.lower().compile(compiler_options=options)
      return self._compiled_init()

  def _device_batch(self, batch: Batch) -> dict[str, jax.Array]:
    """`batch` (with weight 1 where it has none) as global arrays sharded over the mesh."""
    layout = sharding.local_layout(batch)  # set when `batch` holds only this process's rows
    batch = dict(batch)
    batch.setdefault('weight', np.ones((len(next(iter(batch.values()))),), np.float32))
    return sharding.shard_batch(batch, self.mesh, *layout)

  def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    with jax.set_mesh(self.mesh):
      return distributed.aligned_call(self._train_step, state, self._device_batch(batch))

  def step_flops(self, state: TrainState, batch: Batch) -> float:
    """FLOPs of one training step on a batch like `batch`: XLA's cost analysis of the lowered
    step (no compilation; 0.0 where the backend does not report it)."""
    with jax.set_mesh(self.mesh):
      cost = self._train_step.lower(state, self._device_batch(batch)).cost_analysis()
    if isinstance(cost, list):  # older JAX: one dict per computation
      cost = cost[0] if cost else {}
    return float((cost or {}).get('flops', 0.0))

  def average_metrics(self, params: Any, batches: Iterable[Batch]) -> dict[str, float]:
    """sum/count of the task's metrics over all batches (padding rows have weight 0)."""
    n_dev = sharding.data_parallel_size(self.mesh)
    sums: dict[str, list[float]] = {}
    size = None
    with jax.set_mesh(self.mesh):
      for batch in batches:
        n = len(next(iter(batch.values())))
        if size is None:  # pad every batch to the first one's size -> one compilation
          size = -(-n // n_dev) * n_dev
        padded = data_lib.pad_batch(batch, max(size, -(-n // n_dev) * n_dev))
        out = distributed.aligned_call(
            self._eval_step, params, sharding.shard_batch(padded, self.mesh)
        )
        out = jax.device_get(out)
        for k, (s, c) in out.items():
          acc = sums.setdefault(k, [0.0, 0.0])
          acc[0] += float(s)
          acc[1] += float(c)
    if not sums:
      raise ValueError('no evaluation batches')
    return {k: s / c if c else float('nan') for k, (s, c) in sums.items()}

  @functools.lru_cache(maxsize=8)
  def _jitted_apply(self, kwargs_key: tuple[tuple[str, Any], ...]):
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs_key}
    return jax.jit(
        lambda params, *inputs: self.model.apply({'params': params}, *inputs, train=False, **kwargs)
    )

  def apply(self, params: Any, batch: Batch, **kwargs) -> Any:
    """The model on `batch` (no sharding requirement); kwargs e.g. mutable=['intermediates']."""
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    with jax.set_mesh(self.mesh):
      return self._jitted_apply(key)(params, *self.task.model_inputs(batch))

  def context(self, state: TrainState) -> 'EvalContext':
    params, mesh = state.params, self.mesh
    if jax.process_count() > 1:  # decoding and plots run on this process's devices only
      mesh = sharding.local_mesh()
      params = jax.device_put(distributed.gather_to_host(params), sharding.replicated(mesh))
    return EvalContext(
        config=self.config,
        model=self.model,
        params=params,
        mesh=mesh,
        step=int(state.step),
        trainer=self,
        sharded_params=state.params,
    )

  def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
    return self.task.evaluate(self.context(state), split)

  def evaluate_loss(self, state: TrainState, split: str) -> dict[str, float]:
    return self.task.evaluate_loss(self.context(state), split)


@dataclasses.dataclass
class EvalContext:
  """Implements experiments.core.task.EvalContext."""

  config: ml_collections.ConfigDict
  model: Any
  params: Any
  mesh: jax.sharding.Mesh
  step: int
  trainer: Trainer
  sharded_params: Any = None  # the trainer's (global) params when `params` is a local copy

  def average(self, batches: Iterable[Batch]) -> dict[str, float]:
    """Collective: every process runs it on the same batches; sums span all processes."""
    params = self.params if self.sharded_params is None else self.sharded_params
    return self.trainer.average_metrics(params, batches)

  def apply(self, batch: Batch, **kwargs) -> Any:
    if self.mesh is self.trainer.mesh:
      return self.trainer.apply(self.params, batch, **kwargs)
    with jax.set_mesh(self.mesh):  # a process-local copy (multi-process runs)
      return self.trainer.model.apply(
          {'params': self.params}, *self.trainer.task.model_inputs(batch), train=False, **kwargs
      )


def metric_prefix(split: str, validation_split: str) -> str:
  """'eval' for the validation split, else the split name ('test', 'test_2016', ...)."""
  return 'eval' if split == validation_split else split
