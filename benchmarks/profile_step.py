"""Where XLA spends the encoder classifier's training step: time per compiled op, grouped.

    python benchmarks/profile_step.py                   # the configs/mnist.py model, batch 128
    taskset -c 0 python benchmarks/profile_step.py      # one core: op times add up to the step
    python benchmarks/profile_step.py --minimal --variant fused_qkv+direct_heads

Runs `--steps` steps under `jax.profiler.trace` (Perfetto trace, kept in --trace_dir), maps each
executed op (fusion, dot, custom call) to the `op_name` metadata of the optimized HLO and prints
ms per step by model part (forward / backward x stem, attention, norms, FFN, optimizer) and the
most expensive op kinds (the hand-written --minimal step has no module names in its metadata:
only its op-kind table is informative). `--dump_hlo DIR` also writes the optimized HLO text there. Op times are
wall time inside each op: on a busy machine they include preemption (compare shares, not ms).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from benchmarks import minimal_vit  # noqa: E402
from benchmarks import train_step  # noqa: E402
from transformer.classifier import ClassifierConfig  # noqa: E402

# First match wins: substrings of the op_name metadata -> part of the model.
PARTS = (
    ('stem_conv', 'stem'),
    ('patch_embedding', 'stem'),
    ('norm', 'layer norm'),
    ('query', 'q/k/v projection'),
    ('key', 'q/k/v projection'),
    ('value', 'q/k/v projection'),
    ('/out/', 'attention output projection'),
    ('bhqd,bhkd', 'attention scores q.k'),
    ('bqhd,bkhd', 'attention scores q.k'),
    ('bhqk,bhkd', 'attention weighted sum a.v'),
    ('bhqk,bkhd', 'attention weighted sum a.v'),
    ('attention', 'attention softmax/scale/transposes'),
    ('ffn', 'feed-forward'),
    ('wi', 'feed-forward'),
    ('wo', 'feed-forward'),
    ('head', 'classifier head'),
    ('pos_embedding', 'positions'),
)


def op_metadata(hlo_text: str) -> dict[str, str]:
  """Instruction name -> op_name metadata ('' if none) from optimized HLO text."""
  names = {}
  for line in hlo_text.splitlines():
    match = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = ', line)
    if match:
      op = re.search(r'op_name="([^"]*)"', line)
      names.setdefault(match.group(1), op.group(1) if op else '')
  return names


def part_of(op_name: str) -> str:
  if 'transpose(jvp' in op_name:
    direction = 'bwd '
  elif 'jvp(' in op_name:
    direction = 'fwd '
  else:
    return 'optimizer / other'
  for key, part in PARTS:
    if key in op_name:
      return direction + part
  return direction + 'other (residual adds, pooling, loss)'


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--stem', default='conv', choices=['conv', 'linear'])
  parser.add_argument('--pooling', default='mean', choices=['mean', 'cls'])
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--minimal', action='store_true', help='profile benchmarks/minimal_vit.py')
  parser.add_argument('--variant', default='', help='minimal variant, e.g. fused_qkv+direct_heads')
  parser.add_argument('--top', type=int, default=15, help='op kinds listed')
  parser.add_argument('--trace_dir', default='/tmp/profile_step')
  parser.add_argument('--dump_hlo', default='', help='write the optimized HLO text here')
  args = parser.parse_args()

  cfg = ClassifierConfig(dropout_rate=0.0, stem=args.stem, pooling=args.pooling)
  rng = np.random.default_rng(0)
  images = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
  labels = rng.integers(0, 10, args.batch).astype(np.int32)
  if args.minimal:
    variant = train_step.parse_variant(args.variant) if args.variant else minimal_vit.Variant()
    run = train_step.minimal_step_fn(cfg, images, labels, variant)
  else:
    run = train_step.project_step_fn(cfg, images, labels)
  hlo = run.hlo_text()
  if args.dump_hlo:
    os.makedirs(args.dump_hlo, exist_ok=True)
    with open(os.path.join(args.dump_hlo, 'train_step.after_optimizations.txt'), 'w') as f:
      f.write(hlo)
  names = op_metadata(hlo)
  run()
  run()
  shutil.rmtree(args.trace_dir, ignore_errors=True)
  with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
    for _ in range(args.steps):
      run()
  (trace_file,) = glob.glob(os.path.join(args.trace_dir, '**', '*.trace.json.gz'), recursive=True)
  with gzip.open(trace_file) as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events

  by_part: collections.Counter = collections.Counter()
  by_kind: collections.Counter = collections.Counter()
  count: collections.Counter = collections.Counter()
  for e in events:
    if e.get('ph') != 'X' or e['name'] not in names:
      continue
    ms = e.get('dur', 0) / 1e3 / args.steps
    kind = re.sub(r'\.\d+$', '', e['name'])
    by_part[part_of(names[e['name']])] += ms
    by_kind[kind] += ms
    count[kind] += 1 / args.steps
  total = sum(by_part.values())
  print(
      f"{'minimal' + (' ' + args.variant if args.variant else '') if args.minimal else 'project'}"
      f' step, batch {args.batch}: {total:.1f} ms of op time per step (summed over threads), '
      f'load average {os.getloadavg()[0]:.1f}'
  )
  print('\nby model part (ms/step, share):')
  for part, ms in by_part.most_common():
    print(f'  {ms:8.2f}  {ms / total:6.1%}  {part}')
  print(f'\nby op kind (top {args.top}; ms/step, share, ops per step):')
  for kind, ms in by_kind.most_common(args.top):
    print(f'  {ms:8.2f}  {ms / total:6.1%}  {count[kind]:5.0f}  {kind}')


if __name__ == '__main__':
  main()
