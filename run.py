"""The one entry point: `python run.py VERB [flags] [args]`.

Verbs:
  train     Train (or resume) a model:
              python run.py train --config configs/digits.py --workdir /tmp/digits
              python run.py train --config configs/mnist.py --workdir DIR --config.num_train_steps=100
            Re-running the same command in a workdir that holds checkpoints resumes exactly.
  eval      Restore a checkpoint and evaluate a split; appends to DIR/metrics.jsonl:
              python run.py eval --workdir DIR [--checkpoint latest|best|STEP] [--split NAME]
  classify  Top classes of image files with a trained classifier:
              python run.py classify --workdir DIR IMAGE.png ...
  translate Translate sentences (arguments or stdin lines) with a translation run:
              python run.py translate --workdir DIR "A dog runs in the park." [--plot_attention DIR]
  generate  Sample continuations of prompts with a language-model run:
              python run.py generate --workdir DIR "A dog" [--temperature 0.8 --top_k 40] [--plot_attention DIR]
  sweep     Run or resume a hyperparameter sweep (Optuna); trials in DIR/trials/<number>/:
              python run.py sweep --config configs/sweeps/digits_lr.py --workdir DIR [--workers N]
                                  [--storage postgresql://USER@HOST/DB]
  report    Write DIR/report.md and DIR/plots/ of a sweep:
              python run.py report --workdir DIR
  prepare   Prepare a config's dataset once (TFDS's MNIST / WMT14 need '.[prepare]' for this):
              python run.py prepare --config configs/mnist.py
  doctor    Check this machine (devices, matmul peaks, attention kernels, tiny training runs):
              python run.py doctor

`python run.py VERB --help` describes a verb and its flags.
"""

from __future__ import annotations

import importlib
import sys


def _verbs() -> dict[str, str]:
  """verb -> "module:ATTR"; the one table is experiments/core/registry.py (imports no JAX)."""
  from experiments.core import registry  # pylint: disable=g-import-not-at-top

  return registry.verbs()


def _load_verb(name: str):
  module_name, attr = _verbs()[name].split(':')
  module = importlib.import_module(module_name)
  return module, getattr(module, attr)


def _overview() -> str:
  lines = [__doc__.strip(), '', 'Available verbs:']
  for name in _verbs():
    try:
      summary = _load_verb(name)[1].summary
    except ImportError as e:  # pragma: no cover - a broken verb module must not hide the others
      summary = f'(unavailable: {e})'
    lines.append(f'  {name:<10} {summary}')
  return '\n'.join(lines) + '\n'


def main() -> None:
  args = sys.argv[1:]
  if not args or args[0] in ('-h', '--help', '--helpshort', '--helpfull', 'help'):
    stream = sys.stdout if args else sys.stderr
    stream.write(_overview())
    sys.exit(0 if args else 2)
  name = args[0]
  if name not in _verbs():
    sys.stderr.write(
        f'run.py: unknown verb {name!r}; choose one of {", ".join(_verbs())}.\n'
        f'Try: python run.py --help\n'
    )
    sys.exit(2)

  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  module, verb = _load_verb(name)
  verb.define_flags()
  if any(a in ('-h', '--help', '--helpshort') for a in args[1:]):  # absl would exit 1
    sys.stdout.write(f'{verb.usage}\nflags:\n{flags.FLAGS.module_help(module)}\n')
    sys.exit(0)
  flags.adopt_module_key_flags(module)  # so absl's --helpfull lists the verb's flags
  sys.modules['__main__'].__doc__ = verb.usage  # absl prints this on flag errors
  app.run(
      lambda argv: _run_verb(verb, name, argv[1:]),
      argv=[sys.argv[0], *args[1:]],
      flags_parser=lambda argv: _parse_flags(flags.FLAGS, name, argv),
  )


def _run_verb(verb, verb_name: str, argv: list[str]):
  try:
    return verb.main(argv)
  except OSError as e:  # ml_collections defers a bad --config FILE to its first use
    if 'Failed loading config file' not in str(e):
      raise
    sys.stderr.write(f'run.py {verb_name}: cannot load the config file: {e}\n')
    sys.exit(2)


def _parse_flags(flag_values, verb_name: str, argv: list[str]) -> list[str]:
  """absl flag parsing, but a bad `--config.a.b=v` override (unknown key in the locked config,
  wrong type) exits 2 with one line naming it instead of a traceback."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  try:
    return flag_values(argv)
  except flags.Error as e:  # what absl's default parser reports, minus the traceback
    message, _, trace = str(e).partition('Traceback (most recent call last):')
    if trace:  # an exception inside the config file's get_config: keep its last line
      message = f'{message.strip()} {trace.strip().splitlines()[-1]}'
    sys.stderr.write(f'run.py {verb_name}: {message}\nTry: python run.py {verb_name} --help\n')
    sys.exit(2)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    cause = e
    while cause.__context__ is not None and isinstance(
        cause.__context__, (KeyError, AttributeError)
    ):
      cause = cause.__context__  # ml_collections' KeyError carries the "did you mean" hint
    overrides = [a for a in argv[1:] if a.startswith('--config.')]
    sys.stderr.write(
        f'run.py {verb_name}: bad config override {cause}; overrides given: '
        f'{" ".join(overrides) or "(none)"}. Keys and types are those of the config '
        f'file (locked: no new keys).\n'
    )
    sys.exit(2)


if __name__ == '__main__':
  main()
