"""`run.py translate`: translate sentences with a trained translation run."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator

from absl import flags

from experiments.core.task import Verb
from experiments.text.input_lines import input_lines

FLAGS = flags.FLAGS

USAGE = """\
python run.py translate --workdir DIR [flags] "SENTENCE" ["SENTENCE" ...]
python run.py translate --workdir DIR [flags] < input.txt        (one sentence per line)

Restores a translation run of DIR (default: the best checkpoint by validation BLEU) and
prints one translation per input line, in order, on stdout (beam search with the config's
beam size and length penalty unless --beam_size/--alpha say otherwise).

Models trained on Multi30k's `tok` variant read lowercased, Moses-tokenized text: input
is lowercased and tokenized like the dataset, and the output is detokenized for display
(--nodetokenize prints the model's tokenized output, the form BLEU is computed on).

Bad lines never stop the others: an empty line gives an empty output line; a line longer
than the model's max_len (in tokens) is truncated with a warning on stderr; a line that is
not valid UTF-8 gets an error on stderr and an empty output line, and the exit code is 1.

--plot_attention DIR writes, for every translated line N, DIR/attention_N.png (decoder
cross-attention of --attention_layer, mean over heads) and DIR/attention_N_heads.png
(one panel per head), with source pieces on the x axis and output pieces on the y axis.
An RNN model (model.architecture='rnn') attends once: its alignments are layer 0.
"""


def _define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Run directory of a translation training.')
  flags.DEFINE_string('checkpoint', 'best', "'latest', 'best' or a step number.")
  flags.DEFINE_integer(
      'beam_size',
      None,
      'Beam size (default: config.decoding.beam_size; ' '1 = greedy).',
      lower_bound=1,
  )
  flags.DEFINE_float(
      'alpha', None, 'GNMT length penalty alpha (default: config.decoding.alpha).', lower_bound=0.0
  )
  flags.DEFINE_bool('detokenize', True, 'tok-variant models: print detokenized output.')
  flags.DEFINE_string('plot_attention', '', 'Folder for cross-attention heatmaps (off if empty).')
  flags.DEFINE_integer('attention_layer', -1, 'Decoder layer of the heatmaps (-1 = last).')
  flags.DEFINE_integer(
      'chunk_size', 512, 'Lines translated per chunk when reading stdin.', lower_bound=1
  )
  flags.mark_flags_as_required(['workdir'])


def _chunks(items: Iterator, size: int) -> Iterator[list]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _main(argv: list[str]) -> int:
  from experiments import verbs  # pylint: disable=g-import-not-at-top
  from experiments.verbs import error  # pylint: disable=g-import-not-at-top

  try:
    restored = verbs.restore_run(FLAGS.workdir, FLAGS.checkpoint, 'translation', 'translation')
  except (ValueError, RuntimeError, FileNotFoundError) as e:
    return error(str(e))
  task = restored.task
  from experiments.translation import attention_plots  # pylint: disable=g-import-not-at-top
  from experiments.translation.task import search_settings  # pylint: disable=g-import-not-at-top

  settings = search_settings(restored.config)
  if FLAGS.beam_size is not None:
    settings = dataclasses.replace(settings, beam_size=FLAGS.beam_size)
  if FLAGS.alpha is not None:
    settings = dataclasses.replace(settings, alpha=FLAGS.alpha)
  translator = task.translator(restored.trainer.model, restored.trainer.mesh)
  params = restored.state.params
  data = restored.config.data
  tok_variant = data.variant == 'tok'
  if tok_variant:
    from experiments.text.moses import tok_text  # pylint: disable=g-import-not-at-top

    source_text, target_text = tok_text(data.source_lang), tok_text(data.target_lang)
  try:
    model_cfg = task.model_config
    verbs.check_attention_flags(
        FLAGS.attention_layer,
        model_cfg.num_decoder_layers if model_cfg.architecture == 'transformer' else 1,
        FLAGS.plot_attention,
        'decoder ',
    )
  except verbs.ArgumentError as e:
    return error(str(e), 2)

  chunk_size = FLAGS.chunk_size
  if (not argv or argv == ['-']) and sys.stdin.isatty():
    sys.stderr.write('Type sentences, one per line (Ctrl-D to end).\n')
    chunk_size = 1  # interactive: answer every line at once
  failures = total = 0
  line_no = 0
  for chunk in _chunks(input_lines(argv), chunk_size):
    todo = []  # (position in chunk, model input text)
    outputs = [''] * len(chunk)
    for pos, (text, problem) in enumerate(chunk):
      n = line_no + pos + 1
      if text is None:
        sys.stderr.write(f'line {n}: error: {problem}; skipped\n')
        failures += 1
      elif text.strip():
        todo.append((pos, source_text.preprocess(text) if tok_variant else text))
    results = translator.translate(params, [t for _, t in todo], settings) if todo else []
    for (pos, _), result in zip(todo, results):
      n = line_no + pos + 1
      if result.truncated_from:
        sys.stderr.write(
            f"line {n}: warning: {result.truncated_from} tokens exceed the model's max_len="
            f'{translator.max_source_len}; translated the first {len(result.source_ids) - 1} '
            'tokens only\n'
        )
      text = result.text
      if tok_variant and FLAGS.detokenize:
        text = target_text.detokenize(text)
      outputs[pos] = text
      if FLAGS.plot_attention and result.output_ids:
        prefix = os.path.join(FLAGS.plot_attention, f'attention_{n}')
        paths = attention_plots.plot_cross_attention(
            translator, params, result, prefix, layer=FLAGS.attention_layer, title=f'line {n}'
        )
        sys.stderr.write(f'line {n}: attention plots {", ".join(paths)}\n')
    for text in outputs:
      sys.stdout.write(text + '\n')
    sys.stdout.flush()
    line_no += len(chunk)
    total += len(chunk)
  return verbs.lines_exit_code(total, failures, 'sentences', 'lines could not be translated')


TRANSLATE = Verb(
    name='translate',
    summary='translate sentences (arguments or stdin) with a ' 'translation run',
    usage=USAGE,
    define_flags=_define_flags,
    main=_main,
)
