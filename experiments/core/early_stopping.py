"""Early stopping on the validation loss: stop when it has not improved for `patience` evaluations.

The decision is a pure function of the sequence of `eval/loss` values logged so far, so a resumed
run (its metrics.jsonl is cut back to its checkpoint) decides exactly as an uninterrupted one, and a
finished run that stopped early, launched again, does not train on.

  config.eval_loss_every_steps   a cheap validation-loss evaluation (no decoding, no BLEU) every that
                                 many steps, logged as eval/<loss metrics>; 0 = only the full
                                 evaluations of eval_every_steps (which log eval/loss too)
  config.early_stopping_patience stop after this many consecutive loss evaluations without an
                                 improvement (a loss below the best so far by more than
                                 early_stopping_min_delta); 0 = off (train num_train_steps)
  config.early_stopping_min_delta

The run then ends as at num_train_steps: a checkpoint of the stopping step, the final test
evaluation of that state, and `early_stopping/stopped_at` in metrics.jsonl.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

LOSS = 'eval/loss'
STOPPED_AT = 'early_stopping/stopped_at'


def should_stop(losses: Sequence[float], patience: int, min_delta: float = 0.0) -> bool:
  """True when the last `patience` losses came after the last improvement. An improvement is a
  loss below the best so far by more than `min_delta`; the best moves only on an improvement
  (Keras's EarlyStopping semantics)."""
  if patience <= 0 or not losses:
    return False
  best, last_improvement = float('inf'), -1
  for i, loss in enumerate(losses):
    if loss < best - min_delta:
      best, last_improvement = loss, i
  return len(losses) - 1 - last_improvement >= patience


def describe(losses: Sequence[float]) -> str:
  """One line for the log: the best validation loss and how many evaluations ago it was."""
  best = min(range(len(losses)), key=lambda i: losses[i])
  return (
      f'best validation loss {losses[best]:.4f} at evaluation {best + 1} of {len(losses)}, '
      f'last {losses[-1]:.4f}'
  )


def losses_of(history: Iterable[dict[str, Any]]) -> list[float]:
  """The validation losses of a run's metrics.jsonl, in step order (lines of `run.py eval`, which
  carry a 'checkpoint' field, are not part of the run)."""
  points = [(h['step'], h[LOSS]) for h in history if LOSS in h and 'checkpoint' not in h]
  return [float(loss) for _, loss in sorted(points, key=lambda p: p[0])]


def stopped_at(history: Iterable[dict[str, Any]]) -> int | None:
  """The step where a run stopped early, or None."""
  steps = [int(h[STOPPED_AT]) for h in history if STOPPED_AT in h]
  return steps[-1] if steps else None
