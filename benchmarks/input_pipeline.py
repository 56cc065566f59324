"""Input pipeline throughput on Multi30k: Grain with 0 / N workers vs the in-memory source.

  TRANSFORMER_DATA_DIR=/path/to/data python benchmarks/input_pipeline.py [--steps 300]
      [--workers 0,2] [--vocab_size 6000]

Builds the `tok` en->de training pairs of configs/translation_multi30k.py, trains (once, cached
in --cache_dir) its SentencePiece vocabulary, then times `--steps` consecutive training batches
(the batching of the config: 4096 tokens, up to 512 rows) from
  memory   batching.BucketedSource: every pair tokenized up front, token lists in memory
  grain-N  grain_pipeline.TranslationGrainSource with N worker processes: pairs read and
           tokenized per batch (lengths pass timed separately)
and prints examples/s (real sentence pairs per second), the ratio to the in-memory peer measured
in the same run, and the resident memory of this process (ru_maxrss and the growth while
building each source; Grain workers are separate processes and not included).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # noqa: E402


def rss_mib() -> float:
  """Current resident set size of this process (Linux /proc), MiB."""
  with open('/proc/self/statm') as f:
    pages = int(f.read().split()[1])
  return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter
  )
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--workers', default='0,2')
  parser.add_argument('--vocab_size', type=int, default=6000)
  parser.add_argument('--cache_dir', default='/tmp/input_pipeline_bench')
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()

  from experiments.core import configuration  # noqa: F401  (registers nothing; keeps imports light)
  from experiments.text import batching, grain_pipeline
  from experiments.translation import data as data_lib
  from experiments.text import tokenizer as tok_lib
  import importlib.util

  spec = importlib.util.spec_from_file_location(
      'cfg', os.path.join(os.path.dirname(__file__), '..', 'configs', 'translation_multi30k.py')
  )
  cfg = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(cfg)
  config = cfg.get_config()
  d = config.data
  if not data_lib.data_root(d):
    sys.exit('set $TRANSFORMER_DATA_DIR (holding multi30k/)')
  os.makedirs(args.cache_dir, exist_ok=True)
  d.tfds_data_dir = os.path.join(args.cache_dir, 'tfds')
  split = data_lib.load_splits(d, ('train',))['train']
  model = os.path.join(args.cache_dir, f'spm{args.vocab_size}.model')
  if not os.path.exists(model):
    tok_lib.train_sentencepiece(split.sources + split.targets, model, vocab_size=args.vocab_size)
  tokenizer = tok_lib.Tokenizer.load(model)
  bucketing = batching.Bucketing(
      tokens_per_batch=d.tokens_per_batch,
      max_rows=config.batch_size,
      length_multiple=d.length_multiple,
      row_multiple=d.row_multiple,
  )
  print(f'Multi30k train: {len(split)} pairs; {args.steps} steps; load {os.getloadavg()}')

  def timed(name, source, build_s, grown):
    """Steady-state examples/s over steps 1.. (step 0 pays for starting workers: reported)."""
    start = time.perf_counter()
    source.batch(0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    pairs = 0
    for step in range(1, args.steps):
      pairs += int(source.batch(step)['weight'].sum())
    seconds = time.perf_counter() - start
    rate = pairs / seconds
    print(
        f'{name:>9}: {rate:9.0f} examples/s ({pairs} pairs in {seconds:.2f} s), first batch '
        f'{first:.2f} s, build {build_s:.2f} s, +{grown:.0f} MiB RSS while building'
    )
    return rate

  results = {}
  before = rss_mib()
  start = time.perf_counter()
  src, tgt = tokenizer.encode_source(split.sources), tokenizer.encode_target(split.targets)
  keep = [i for i, (s, t) in enumerate(zip(src, tgt)) if max(len(s), len(t)) <= d.max_train_len]
  memory = batching.BucketedSource(
      [src[i] for i in keep], [tgt[i] for i in keep], bucketing, seed=config.seed
  )
  results['memory'] = timed('memory', memory, time.perf_counter() - start, rss_mib() - before)
  del memory, src, tgt
  records = data_lib.TextPairs(split)
  for workers in [int(w) for w in args.workers.split(',')]:
    before = rss_mib()
    start = time.perf_counter()
    source = grain_pipeline.TranslationGrainSource(
        records,
        tokenizer,
        bucketing,
        seed=config.seed,
        max_train_len=d.max_train_len,
        num_workers=workers,
    )
    results[f'grain-{workers}'] = timed(
        f'grain-{workers}', source, time.perf_counter() - start, rss_mib() - before
    )
    source.close()
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f'peak RSS of this process: {peak:.0f} MiB; load {os.getloadavg()}')
  for name, rate in results.items():
    print(f'{name:>9}: {rate / results["memory"]:.2f}x the in-memory source')


if __name__ == '__main__':
  main()
