"""The Task protocol: everything task-specific that the one trainer needs.

The trainer (`experiments/core/trainer.py`) knows nothing about images or sentences.
A task (classification, translation, ...) subclasses `Task` and is named in the
config by `config.task`; `experiments/core/registry.py` maps that name to the class (imported
lazily, so `run.py --help` imports neither JAX nor a task).

Life cycle of `run.py train` (what the trainer calls, in order):

  1. `TaskClass.validate_config(config)`   before anything is compiled or written;
                                           raise `ConfigError(field, message)`.
  2. `task = TaskClass(config)`            cheap: no data loading here.
  3. `task.setup(workdir)`                 create workdir assets once (e.g. a
                                           SentencePiece model under `workdir/assets/`)
                                           and REUSE them when they exist (resume /
                                           eval / translate); `workdir=None` in tests.
                                           Load data lazily (on first use): inference
                                           verbs (classify, translate) need none.
  4. `task.build_model()`, `task.dummy_inputs()`
                                           the trainer initialises with
                                           `model.init({'params', 'dropout'}, *dummy_inputs, train=False)`.
  5. `task.train_source()`                 a `TrainSource`: batch for step s is a pure
                                           function of (config.seed, s) -> exact resume.
  6. per step: `task.loss_and_metrics(model, params, batch, rng=..., train=True)`
                                           inside `jax.jit` + `jax.grad`.
  7. periodically: `task.evaluate(ctx, task.validation_split)` -> {name: float}; the
                                           trainer logs it as `eval/<name>` and keeps the
                                           best checkpoint by `task.best_metric`/`best_mode`.
  8. at the end: `task.evaluate(ctx, split)` for `task.test_splits` (logged as
                                           `test/<name>` for split 'test', else `<split>/<name>`),
                                           then `task.make_plots(ctx, plot_dir, history)`.

Batches are dicts of NumPy arrays with the batch on axis 0. The trainer shards axis 0
over the mesh's data axis. Every batch may carry `batch['weight']` ([batch] float32,
1 = real example, 0 = padding). Eval batches are padded by the trainer to a multiple of
the data-parallel size with all-zero rows and weight 0, so `loss_and_metrics` MUST
weight its metric sums by `batch['weight']` (the trainer adds weight=1 when missing).

Metrics are `(sum, count)` pairs so that they average correctly over batches and
devices: e.g. `{'loss': (sum_of_losses, num_examples), 'accuracy': (num_correct,
num_examples)}`; for tokens, count tokens. `EvalContext.average` returns sum/count.
Non-differentiable metrics (BLEU) are computed in `evaluate` with `ctx.params`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # keeps `run.py --help` from importing JAX
  import flax.linen as nn
  import jax
  import ml_collections
  import numpy as np

Batch = dict[str, 'np.ndarray']
# name -> (sum, count); both scalars (jax or numpy).
Metrics = dict[str, tuple[Any, Any]]


class RunError(Exception):
  """An error whose message says it all (bad config, data, checkpoint, file): `run.py`
  prints `run.py: error: <message>` and exits non-zero, without a traceback. Subclasses
  also derive from the matching builtin (ValueError, RuntimeError, FileNotFoundError)."""


class ConfigError(RunError, ValueError):
  """An impossible config value; `field` is the dotted config path (e.g. 'model.num_heads')."""

  def __init__(self, field: str, message: str):
    super().__init__(f'config.{field}: {message}')
    self.field = field


class TrainSource(Protocol):
  """Step-indexed training data: `batch(step)` depends only on (seed, step).

  Helpers that implement this live in `experiments/core/data.py` (`ArraySource` for
  in-memory arrays with fixed batch size, `EpochSource` for any per-epoch list of
  batches, e.g. token-budget buckets).
  """

  def batch(self, step: int) -> Batch:
    """The global training batch for `step` (0-based)."""

  def state(self, step: int) -> dict[str, Any]:
    """JSON-serialisable iterator position before `step` (stored in checkpoints),
    e.g. {'step': 1200, 'epoch': 3, 'position': 48, 'seed': 0}."""

  def check_state(self, state: dict[str, Any]) -> None:
    """Raise ValueError if a checkpointed `state` cannot be resumed by this source
    (e.g. different seed or dataset size)."""


class EvalContext(Protocol):
  """What the trainer hands to `Task.evaluate` / `Task.make_plots`."""

  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any  # replicated parameters (a pytree of jax.Arrays)
  mesh: jax.sharding.Mesh
  step: int  # training step of `params`

  def average(self, batches: Iterable[Batch]) -> dict[str, float]:
    """Runs the jitted, sharded `task.loss_and_metrics(train=False)` over `batches`
    and returns {name: sum / count} as Python floats."""

  def apply(self, batch: Batch, **kwargs) -> Any:
    """`model.apply({'params': params}, *task.model_inputs(batch), train=False, **kwargs)`,
    jitted; e.g. `ctx.apply(batch, mutable=['intermediates'])` for attention weights."""


class Task(abc.ABC):
  """Base class of every task. Override what is abstract; the rest has defaults."""

  # Split used for periodic evaluation and best-checkpoint selection.
  validation_split: str = 'validation'
  # Splits evaluated once at the end of training (and by `run.py eval` by default: first one).
  test_splits: Sequence[str] = ('test',)
  # Name returned by `evaluate` (without 'eval/') and whether higher is better.
  best_metric: str = 'accuracy'
  best_mode: Literal['max', 'min'] = 'max'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the field for impossible values. No I/O, no compile."""

  def setup(self, workdir: str | None) -> None:
    """Create-or-reuse assets in `workdir/assets`. Called once per process, also by
    eval/classify/translate (restore_for_inference)."""

  def prepare_data(self) -> list[str]:
    """Prepares the config's dataset once (`run.py prepare`) so that training reads it without
    TensorFlow; returns lines saying what was prepared where. Default: nothing to prepare."""
    return [f'{self.config.task}: nothing to prepare']

  @property
  def eval_splits(self) -> tuple[str, ...]:
    """Every split `run.py eval --split` accepts."""
    return (self.validation_split, *self.test_splits)

  @abc.abstractmethod
  def build_model(self) -> nn.Module:
    """The flax module (e.g. transformer.classifier.EncoderClassifier(config))."""

  @abc.abstractmethod
  def dummy_inputs(self) -> tuple[np.ndarray, ...]:
    """Positional model inputs with the right dtypes/trailing shapes, batch size 1 is fine."""

  def model_inputs(self, batch: Batch) -> tuple[Any, ...]:
    """Positional model inputs taken from a batch (used by `EvalContext.apply`)."""
    raise NotImplementedError

  @abc.abstractmethod
  def train_source(self) -> TrainSource:
    """Step-indexed training batches (see TrainSource)."""

  @abc.abstractmethod
  def eval_batches(self, split: str) -> Iterator[Batch]:
    """All examples of `split`, in a fixed order, batched (last batch may be short).
    Raise ValueError naming the valid splits for an unknown split."""

  @abc.abstractmethod
  def loss_and_metrics(
      self, model: nn.Module, params: Any, batch: Batch, *, rng: jax.Array | None, train: bool
  ) -> tuple[jax.Array, Metrics]:
    """Differentiable scalar loss (mean over the batch, honouring batch['weight'])
    and metric (sum, count) pairs. Pure jnp; runs under jax.jit. `rng` is the
    per-step dropout key (None when train=False)."""

  def evaluate(self, ctx: EvalContext, split: str) -> dict[str, float]:
    """Metrics of `split`. Default: averaged `loss_and_metrics`. Override to add
    non-differentiable metrics (e.g. BLEU after beam search with `ctx.params`)."""
    return self.evaluate_loss(ctx, split)

  def evaluate_loss(self, ctx: EvalContext, split: str) -> dict[str, float]:
    """The cheap part of `evaluate`: averaged `loss_and_metrics` only (no decoding). Logged every
    `config.eval_loss_every_steps` for learning curves and early stopping."""
    return ctx.average(self.eval_batches(split))

  def hints(self, workdir: str) -> list[str]:
    """Commands printed after training under "Try next" (e.g. the task's verb)."""
    return []

  def make_plots(
      self, ctx: EvalContext, plot_dir: str, history: list[dict[str, float]]
  ) -> list[str]:
    """Task-specific PNGs in `plot_dir` (learning curves are drawn by the trainer).
    `history` is the parsed metrics.jsonl. Returns the written paths."""
    return []


@dataclasses.dataclass(frozen=True)
class Verb:
  """A `run.py` sub-command.

  `define_flags()` defines the verb's absl flags (called only when this verb runs, so
  verbs may reuse flag names); `main(argv)` gets the remaining positional arguments
  (after the verb and its flags) and returns the exit code (0 / None = success).
  Keep the defining module light (absl + this file); import jax/TF inside `main`.
  Register it with one line in experiments/core/registry.py (a task's verbs in its entry).
  Shared helper for verbs: `experiments.core.loop.restore_for_inference(workdir, 'best')`.
  """

  name: str
  summary: str  # one line for `run.py --help`
  usage: str  # full help text for `run.py VERB --help`
  define_flags: Any  # Callable[[], None]
  main: Any  # Callable[[list[str]], int | None]
