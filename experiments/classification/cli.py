"""`run.py classify`: top classes of image files with a trained classifier."""

from __future__ import annotations

import sys

from absl import flags

from experiments.core.task import RunError, Verb

FLAGS = flags.FLAGS

USAGE = """\
python run.py classify --workdir DIR IMAGE [IMAGE ...]

Restores a classifier of DIR (default: the best checkpoint) and prints the top classes
with probabilities for every image. Any size, grayscale or RGB (PNG, JPEG, ...): images
are converted to the training images' channels and resized to their size. Digits are
expected light on a dark background like MNIST; with --invert=auto (default) images
whose mean is bright (dark strokes on white paper) are inverted first.
A file that cannot be read as an image gets an error line; the others are still
classified, and the exit code is 1.
"""


def _define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Run directory of a classification training.')
  flags.DEFINE_string('checkpoint', 'best', "'latest', 'best' or a step number.")
  flags.DEFINE_integer('top_k', 3, 'Number of classes to print per image.', lower_bound=1)
  flags.DEFINE_enum(
      'invert',
      'auto',
      ['auto', 'yes', 'no'],
      'Invert intensities (auto: when the image is mostly bright).',
  )
  flags.mark_flags_as_required(['workdir'])


def load_image(path: str, image_size: tuple[int, int], channels: int, invert: str):
  """File -> float32 [h, w, channels] in [0, 1]; raises ValueError if not an image."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(path) as img:
      img.load()
      if img.mode in ('RGBA', 'LA') or (img.mode == 'P' and 'transparency' in img.info):
        rgba = img.convert('RGBA')
        img = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        img.alpha_composite(rgba)
      img = img.convert('L' if channels == 1 else 'RGB')
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise ValueError(f'not a readable image ({type(e).__name__}: {e})') from None
  h, w = image_size
  shrinking = img.width >= w and img.height >= h
  img = img.resize((w, h), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
  x = np.asarray(img, np.float32) / 255.0
  if x.ndim == 2:
    x = x[..., None]
  if invert == 'yes' or (invert == 'auto' and x.mean() > 0.5):
    x = 1.0 - x
  return x


def _main(argv: list[str]) -> int:
  from experiments.verbs import error, parse_checkpoint  # pylint: disable=g-import-not-at-top

  if not argv:
    return error('no image files given; usage: python run.py classify --workdir DIR IMAGE ...', 2)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.core import loop  # pylint: disable=g-import-not-at-top
  from experiments.core.metric_logging import quiet_library_logs  # pylint: disable=g-import-not-at-top

  quiet_library_logs()
  try:
    restored = loop.restore_for_inference(FLAGS.workdir, parse_checkpoint(FLAGS.checkpoint))
  except RunError as e:
    return error(str(e))
  task = restored.task
  if not hasattr(task, 'class_names'):
    return error(f'{FLAGS.workdir} is a {restored.config.task!r} run, not a classifier')
  cfg = task.model_config
  images, ok_paths, failures = [], [], 0
  for path in argv:
    try:
      images.append(load_image(path, cfg.image_size, cfg.channels, FLAGS.invert))
      ok_paths.append(path)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
      sys.stderr.write(f'{path}: error: {e}\n')
      failures += 1
  if images:
    batch = {'image': np.stack(images)}
    logits = restored.trainer.apply(restored.state.params, batch)
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    k = min(FLAGS.top_k, probs.shape[-1])
    for path, p in zip(ok_paths, probs):
      top = np.argsort(-p)[:k]
      print(f'{path}: ' + '  '.join(f'{task.class_names[c]} ({100 * p[c]:.1f}%)' for c in top))
  if failures:
    return error(f'{failures} of {len(argv)} files could not be classified')
  return 0


CLASSIFY = Verb(
    name='classify',
    summary='print the top classes of image files (classifier runs)',
    usage=USAGE,
    define_flags=_define_flags,
    main=_main,
)
