"""A run's parameter counts, logged once when it starts (metrics.jsonl, step 0).

  {"step": 0, "params/total": 1234567, "params/non_embedding": 595072}

Reports read the size from there (experiments/analysis/scaling_report.py), so a run's results
need no checkpoint to be placed on a scaling plot: a sweep dir carried to another machine
without its checkpoints still reports. Non-embedding counts follow Kaplan et al. 2020: the
language model's own rule (transformer.language_model.count_parameters: token and position
tables out); for the other models, every parameter under a name containing 'embed'.
"""

from __future__ import annotations

from typing import Any

import jax

TOTAL, NON_EMBEDDING = 'params/total', 'params/non_embedding'


def count(params: Any, task: str) -> dict[str, int]:
  """{'total', 'non_embedding'} parameter counts of `params` (arrays or shape structs) of a
  model of `task` (config.task)."""
  if task == 'lm':
    from transformer.language_model import count_parameters  # pylint: disable=g-import-not-at-top

    return count_parameters(params)
  total = non_embedding = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    total += int(leaf.size)
    if not any('embed' in str(getattr(k, 'key', '')) for k in path):
      non_embedding += int(leaf.size)
  return {'total': total, 'non_embedding': non_embedding}


def record(params: Any, task: str) -> dict[str, int]:
  """The metrics.jsonl entries of `count`."""
  counts = count(params, task)
  return {TOTAL: counts['total'], NON_EMBEDDING: counts['non_embedding']}


def from_history(history: list[dict[str, Any]]) -> dict[str, int] | None:
  """{'total', 'non_embedding'} as the run logged them (the last record), or None if it did
  not (a run older than this log)."""
  logged = [h for h in history if TOTAL in h and NON_EMBEDDING in h]
  if not logged:
    return None
  return {'total': int(logged[-1][TOTAL]), 'non_embedding': int(logged[-1][NON_EMBEDDING])}
