"""The one table of names: tasks (their Task class, model config and own verbs) and run.py's verbs.

A new task adds one entry to `TASKS`; a new general verb one line to `GENERAL_VERBS`. Everything is
named by "module:ATTR" strings and imported only when used, so `run.py --help` imports neither JAX
nor any task.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from experiments.core.task import ConfigError


@dataclasses.dataclass(frozen=True)
class TaskEntry:
  task_class: str  # 'module:Class' of the experiments.core.task.Task subclass
  model_config: str  # 'module:Class' of the frozen model config dataclass
  derived: tuple[str, ...]  # model config fields the task fills (not in config.model)
  verbs: dict[str, str] = dataclasses.field(default_factory=dict)  # its own run.py verbs


# config.task -> its entry.
TASKS: dict[str, TaskEntry] = {
    'classification': TaskEntry(
        'experiments.classification.task:ClassificationTask',
        'transformer.classifier:ClassifierConfig',
        ('image_size', 'channels', 'num_classes'),
        {'classify': 'experiments.classification.cli:CLASSIFY'},
    ),
    'translation': TaskEntry(
        'experiments.translation.task:TranslationTask',
        'transformer.models:EncoderDecoderConfig',
        ('src_vocab_size', 'tgt_vocab_size', 'pad_id'),
        {'translate': 'experiments.translation.cli:TRANSLATE'},
    ),
    'lm': TaskEntry(
        'experiments.lm.task:LanguageModelTask',
        'transformer.language_model:LanguageModelConfig',
        ('vocab_size', 'pad_id'),
        {'generate': 'experiments.lm.cli:GENERATE'},
    ),
}

# run.py verbs that every task shares: verb -> "module:ATTR" of an experiments.core.task.Verb.
GENERAL_VERBS: dict[str, str] = {
    'train': 'experiments.verbs:TRAIN',
    'eval': 'experiments.verbs:EVAL',
    'sweep': 'experiments.sweep.cli:SWEEP',
    'report': 'experiments.sweep.cli:REPORT',
    'prepare': 'experiments.verbs:PREPARE',
    'doctor': 'experiments.verbs:DOCTOR',
}


def load(target: str) -> Any:
  """The object named by 'module:ATTR'."""
  module_name, attr = target.split(':')
  return getattr(importlib.import_module(module_name), attr)


def entry(task: str) -> TaskEntry:
  if task not in TASKS:
    raise ConfigError('task', f'unknown task {task!r}; known: {sorted(TASKS)}')
  return TASKS[task]


def task_class(task: str) -> type:
  """The Task subclass of `config.task`."""
  return load(entry(task).task_class)


def verbs() -> dict[str, str]:
  """Every run.py verb -> "module:ATTR", in the order `run.py --help` lists them."""
  out = dict(GENERAL_VERBS)
  for e in TASKS.values():
    for name, target in e.verbs.items():
      if name in out:
        raise ValueError(f'verb {name!r} is registered twice')
      out[name] = target
  return out
