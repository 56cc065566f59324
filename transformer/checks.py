"""Validation of config fields, one message format for every config of the library.

Each check raises a ValueError that starts with the config's name and names the field first
(experiments/core/model_config.py maps a message to `model.<field>` by the first field it names):

    choice("BlockConfig", "norm", "middle", NORMS)   # BlockConfig: unknown norm 'middle'; choose from [...]
    fraction("AttentionConfig", "dropout_rate", 1.5) # ...: dropout_rate must be in [0, 1), got 1.5.
    at_least("LanguageModelConfig", cfg, ("vocab_size", "max_len"))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def choice(owner: str, field: str, value: Any, allowed: Iterable[str]) -> None:
  allowed = list(allowed)
  if value not in allowed:
    raise ValueError(f"{owner}: unknown {field} {value!r}; choose from {allowed}.")


def fraction(owner: str, field: str, value: float) -> None:
  """A rate such as dropout: 0 <= value < 1."""
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{owner}: {field} must be in [0, 1), got {value}.")


def at_least(owner: str, cfg: Any, fields: Iterable[str], low: int = 1) -> None:
  """Integer fields of `cfg` that must be >= `low`."""
  for field in fields:
    if int(getattr(cfg, field)) < low:
      raise ValueError(f"{owner}: {field} must be >= {low}, got {getattr(cfg, field)}.")
