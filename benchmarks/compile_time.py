"""Compile time of one training step, unrolled vs scanned layers (`model.scan_layers`).

    python benchmarks/compile_time.py                 # 12 + 12 layer encoder-decoder
    python benchmarks/compile_time.py --layers 6 24 --remat dots_saveable

For each depth, builds the EncoderDecoder (d_model 256, 4 heads, d_ff 1024) unrolled and with
`scan_layers=True`, and times `jax.jit(train_step).lower(...).compile()` (tracing + lowering +
XLA compilation; no persistent compilation cache) of a value-and-grad + Adam step. Prints
seconds and the unrolled/scanned ratio. Compile time is what scanning saves; run time per step
is the same computation either way.

Measured (`python benchmarks/compile_time.py --layers 1 12 24`, JAX 0.10.2 CPU, the shared 2-core
development machine at load average 16-19 from other jobs, so absolute seconds are inflated):

    layers (enc+dec)   unrolled total   scanned total   unrolled / scanned
    1+1                17.5 s           18.8 s          0.93x
    12+12              78.5 s           30.8 s          2.55x
    24+24              274.6 s          31.6 s          8.68x
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import optax

from transformer.models import EncoderDecoder, EncoderDecoderConfig


def compile_seconds(cfg: EncoderDecoderConfig, batch: int, length: int) -> tuple[float, float]:
  """(trace + lower seconds, XLA compile seconds) of one jitted training step."""
  model = EncoderDecoder(cfg)
  ids = jnp.ones((batch, length), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), ids, ids))["params"]
  opt = optax.adam(1e-3)
  opt_state = jax.eval_shape(opt.init, params)

  def train_step(p, s, src, tgt):
    def loss(p):
      logits = model.apply({"params": p}, src, tgt)
      return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()

    value, grads = jax.value_and_grad(loss)(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, value

  start = time.perf_counter()
  lowered = jax.jit(train_step).lower(params, opt_state, ids, ids)
  traced = time.perf_counter() - start
  start = time.perf_counter()
  lowered.compile()
  return traced, time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--layers", type=int, nargs="+", default=[12], help="encoder = decoder depth")
  parser.add_argument("--remat", default="none", help="model.remat for both variants")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--length", type=int, default=32)
  args = parser.parse_args()
  print(f"JAX {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
  for n in args.layers:
    cfg = EncoderDecoderConfig(
        src_vocab_size=1000,
        tgt_vocab_size=1000,
        d_model=256,
        num_heads=4,
        num_encoder_layers=n,
        num_decoder_layers=n,
        d_ff=1024,
        max_len=args.length,
        remat=args.remat,
    )
    results = {}
    for scan in (False, True):
      trace, xla = compile_seconds(
          dataclasses.replace(cfg, scan_layers=scan), args.batch, args.length
      )
      results[scan] = trace + xla
      print(
          f"{n}+{n} layers, remat={args.remat}, scan_layers={scan!s:5}: "
          f"trace+lower {trace:6.2f} s, XLA compile {xla:6.2f} s, total {trace + xla:6.2f} s"
      )
    print(f"  unrolled / scanned total compile time: {results[False] / results[True]:.2f}x")


if __name__ == "__main__":
  main()
