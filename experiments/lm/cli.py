"""`run.py generate`: continue prompts with a trained language-model run."""

from __future__ import annotations

import os
import sys

from absl import flags

from experiments.core.task import Verb

FLAGS = flags.FLAGS

USAGE = """\
python run.py generate --workdir DIR [flags] "PROMPT" ["PROMPT" ...]
python run.py generate --workdir DIR [flags] < prompts.txt        (one prompt per line)

Restores a language-model run of DIR (default: the best checkpoint by validation perplexity)
and prints, for every prompt and sample, the prompt followed by its sampled continuation (one
line each, in order) on stdout. Sampling uses the key/value cache: each next token is drawn
from softmax(top-k logits / temperature); --temperature 0 (or --greedy) takes the argmax.
Defaults come from the run's config (generation.*). The same flags and --seed give the same
output. An empty prompt ("") samples from the start of a sentence.

Models trained on Multi30k's `tok` variant read lowercased, Moses-tokenized text: prompts are
lowercased and tokenized like the dataset (with the first language of data.languages).

Bad lines never stop the others: a prompt that leaves no room to generate within the model's
max_len, or that is not valid UTF-8, gets an error on stderr and no output, and the exit code
is 1.

--plot_attention DIR writes, for every prompt line N, DIR/attention_N.png (causal
self-attention of --attention_layer over bos + the prompt's pieces, mean over heads) and
DIR/attention_N_heads.png (one panel per head); a recurrent LM (model.architecture=rnn) has none.
"""


def _define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Run directory of a language-model training.')
  flags.DEFINE_string('checkpoint', 'best', "'latest', 'best' or a step number.")
  flags.DEFINE_float(
      'temperature',
      None,
      'Sampling temperature (default: config.generation.temperature; 0 = greedy).',
      lower_bound=0.0,
  )
  flags.DEFINE_integer(
      'top_k', None, 'Sample among the k most likely tokens (0 = all).', lower_bound=0
  )
  flags.DEFINE_bool('greedy', False, 'Argmax decoding (the same as --temperature 0).')
  flags.DEFINE_integer(
      'max_new_tokens',
      None,
      'Tokens to generate per prompt (default: config.generation.max_new_tokens).',
      lower_bound=1,
  )
  flags.DEFINE_integer('num_samples', 1, 'Continuations per prompt.', lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Random seed of the sampling.', lower_bound=0)
  flags.DEFINE_string('plot_attention', '', 'Folder for causal-attention heatmaps (off if empty).')
  flags.DEFINE_integer('attention_layer', -1, 'Layer of the heatmaps (-1 = last).')
  flags.mark_flags_as_required(['workdir'])


def _main(argv: list[str]) -> int:
  from experiments import verbs  # pylint: disable=g-import-not-at-top
  from experiments.verbs import error  # pylint: disable=g-import-not-at-top
  from experiments.text.input_lines import input_lines  # pylint: disable=g-import-not-at-top

  try:
    restored = verbs.restore_run(FLAGS.workdir, FLAGS.checkpoint, 'lm', 'language-model')
  except (ValueError, RuntimeError, FileNotFoundError) as e:
    return error(str(e))
  from experiments.lm import data as data_lib  # pylint: disable=g-import-not-at-top
  from experiments.lm.generation import Generator  # pylint: disable=g-import-not-at-top

  task, config = restored.task, restored.config
  g = config.generation
  temperature = 0.0 if FLAGS.greedy else g.temperature
  if FLAGS.temperature is not None and not FLAGS.greedy:
    temperature = FLAGS.temperature
  settings = dict(
      temperature=temperature,
      top_k=g.top_k if FLAGS.top_k is None else FLAGS.top_k,
      max_new_tokens=g.max_new_tokens if FLAGS.max_new_tokens is None else FLAGS.max_new_tokens,
      seed=FLAGS.seed,
      num_samples=FLAGS.num_samples,
  )
  try:
    verbs.check_attention_flags(
        FLAGS.attention_layer, task.model_config.num_layers, FLAGS.plot_attention
    )
  except verbs.ArgumentError as e:
    return error(str(e), 2)
  if FLAGS.plot_attention and task.model_config.architecture == 'rnn':
    return error("--plot_attention: this run's model.architecture='rnn' has no attention", 2)
  preprocess = lambda text: text  # noqa: E731
  if config.data.corpus == 'multi30k' and config.data.variant == 'tok':
    from experiments.text.moses import tok_text  # pylint: disable=g-import-not-at-top

    preprocess = tok_text(data_lib.languages(config.data)[0]).preprocess

  generator = Generator(restored.trainer.model, task.tokenizer, mesh=restored.trainer.mesh)
  params = restored.state.params
  if (not argv or argv == ['-']) and sys.stdin.isatty():
    sys.stderr.write('Type prompts, one per line (Ctrl-D to end).\n')
  failures = total = 0
  for n, (text, problem) in enumerate(input_lines(argv), start=1):
    total += 1
    if text is None:
      sys.stderr.write(f'line {n}: error: {problem}; skipped\n')
      failures += 1
      continue
    prompt = preprocess(text) if text.strip() else ''
    try:
      samples = generator.generate(params, [prompt], **settings)
      if FLAGS.plot_attention:
        prefix = os.path.join(FLAGS.plot_attention, f'attention_{n}')
        paths = generator.plot_attention(
            params, prompt, prefix, layer=FLAGS.attention_layer, title=f'line {n}'
        )
        sys.stderr.write(f'line {n}: attention plots {", ".join(paths)}\n')
    except ValueError as e:
      sys.stderr.write(f'line {n}: error: {e}; skipped\n')
      failures += 1
      continue
    for sample in samples:
      sys.stdout.write(sample.text + '\n')
    sys.stdout.flush()
  return verbs.lines_exit_code(total, failures, 'prompts', 'prompts could not be continued')


GENERATE = Verb(
    name='generate',
    summary='sample continuations of prompts with a language-model run',
    usage=USAGE,
    define_flags=_define_flags,
    main=_main,
)
