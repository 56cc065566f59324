"""Training-step speed and MFU of the encoder-decoder (the paper's base model), per dtype and
attention implementation, against PyTorch's nn.Transformer on the same device.

    python benchmarks/translation_step.py                          # GPU: base model, batch 64 x 128
    python benchmarks/translation_step.py --batch 8 --layers 2     # CPU-sized smoke run

One run measures, interleaved round by round (a busy device slows every row alike):
  peak     the fastest n x n bf16 and fp32 matmul JAX (and PyTorch) reach on this device;
  project  one jitted training step (AdamW) of transformer.models.EncoderDecoder for every
           --dtypes x --impls pair (`attention.implementation`: 'fused' is cuDNN flash
           attention on NVIDIA GPUs in bf16, XLA elsewhere);
  torch    the same model in PyTorch (nn.Transformer, post-norm, tied output embedding,
           sinusoidal positions), eager and `torch.compile` (fused AdamW on CUDA), per --dtypes
           (bf16 = autocast); skipped when torch is missing.
  --prngs  extra project rows with another dropout PRNG (rbg, unsafe_rbg) than JAX's threefry.
Model FLOPs are analytic: matmuls only, forward + backward = 3x forward, attention counted in
full (the causal half included). MFU = model FLOP/s / the bf16 matmul peak measured in this run
(never a datasheet number). Dropout 0.1 everywhere, as in the paper; no padding (every token real).

Measured on one NVIDIA H100 80GB (JAX 0.11.2, PyTorch 2.11.0+cu130), 22 Nov 2026, defaults (the
paper's base model, batch 64 x 128 tokens, vocabulary 32,000); steps/s (MFU of the run's 740
TFLOP/s JAX bf16 peak): bf16 fused 65.4 (24.4%), bf16 reference 60.6 (22.6%), float32 fused 33.5
(12.5%), float32 reference 34.3 (12.8%); PyTorch eager bf16 autocast 19.4 (7.2%), float32 10.9
(4.1%). bf16 fused / PyTorch eager bf16: 3.33x. With --batch 256 --dtypes bfloat16 (peak 645):
fused 20.6 (32.4%), reference 18.6 (29.2%), PyTorch eager bf16 10.9 (17.1%): 1.90x.
JAX float32 matmuls use TF32 on this GPU by default (400 TFLOP/s fp32 peak vs PyTorch's 52).

One NVIDIA H200 (JAX 0.11.2, PyTorch 2.11.0+cu130), 4 Dec 2026, load 1.7, `--dtypes bfloat16
--impls fused --prngs rbg --steps 10 --rounds 2` (run's JAX bf16 peak 591 TFLOP/s): project fused
61.2 steps/s (24.1% MFU), with the rbg dropout PRNG 55.6 (21.9%); torch.compile bf16 autocast
with fused AdamW 41.9 (16.5%), eager 14.6 (5.8%): 1.48x torch.compile, 4.19x eager.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from experiments.doctor import timed_best  # noqa: E402
from transformer.attention_config import AttentionConfig  # noqa: E402
from transformer.models import EncoderDecoder, EncoderDecoderConfig  # noqa: E402


def model_flops_per_step(cfg: EncoderDecoderConfig, batch: int, length: int) -> float:
  """Analytic matmul FLOPs of one training step, source and target both `length` tokens."""
  d, f, n = cfg.d_model, cfg.d_ff, length
  attn = 2 * 2 * n * n * d  # q·kᵀ and weights·v for one sequence, all heads
  encoder = 2 * n * (4 * d * d + 2 * d * f) + attn
  decoder = 2 * n * (8 * d * d + 2 * d * f) + 2 * attn  # self + cross attention
  logits = 2 * n * d * cfg.tgt_vocab_size
  forward = cfg.num_encoder_layers * encoder + cfg.num_decoder_layers * decoder + logits
  return 3.0 * forward * batch


# ---- matmul peak ---------------------------------------------------------------------------


def jax_matmul(n: int, dtype) -> Callable[[], None]:
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  return lambda: matmul(a, a).block_until_ready()


def torch_matmul(n: int, dtype_name: str, device: str) -> Callable[[], None]:
  import torch  # pylint: disable=import-outside-toplevel

  a = torch.rand(n, n, dtype=getattr(torch, dtype_name), device=device)

  def run():
    torch.mm(a, a)
    if device == "cuda":
      torch.cuda.synchronize()

  return run


# ---- training steps ------------------------------------------------------------------------


def project_step_fn(
    cfg: EncoderDecoderConfig, src: np.ndarray, tgt: np.ndarray, prng: str = "threefry2x32"
):
  """The project's model and AdamW, one jitted step with dropout (as the trainer compiles it);
  `prng`: the dropout key's implementation (threefry2x32 = JAX's default, rbg, unsafe_rbg)."""
  model = EncoderDecoder(cfg)
  params = jax.jit(lambda: model.init(jax.random.key(0), src[:1], tgt[:1])["params"])()
  tx = optax.adamw(1e-4)

  def train_step(params, opt_state, rng, x, y):
    rng, dropout_rng = jax.random.split(rng)

    def loss_fn(p):
      logits = model.apply({"params": p}, x, y[:, :-1], train=True, rngs={"dropout": dropout_rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y[:, 1:]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, rng, loss

  step = jax.jit(train_step, donate_argnums=(0, 1))
  x, y = jnp.asarray(src), jnp.asarray(tgt)
  state = {"p": params, "o": tx.init(params), "r": jax.random.key(1, impl=prng)}

  def run():
    state["p"], state["o"], state["r"], loss = step(state["p"], state["o"], state["r"], x, y)
    return loss

  return run


def torch_step_fn(
    cfg: EncoderDecoderConfig, src: np.ndarray, tgt: np.ndarray, bf16: bool, compiled: bool = False
):
  """PyTorch's nn.Transformer step. `compiled`: what a PyTorch user runs for speed,
  `torch.compile` of the forward + backward + fused AdamW step (default mode)."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  device = "cuda" if torch.cuda.is_available() else "cpu"

  class Seq2Seq(nn.Module):

    def __init__(self):
      super().__init__()
      d = cfg.d_model
      self.src_emb = nn.Embedding(cfg.src_vocab_size, d)
      self.tgt_emb = nn.Embedding(cfg.tgt_vocab_size, d)
      for table in (self.src_emb, self.tgt_emb):  # N(0, d^-1/2), as the project's
        nn.init.normal_(table.weight, std=d**-0.5)
      pos = torch.arange(cfg.max_len)[:, None]
      inv = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
      pe = torch.zeros(cfg.max_len, d)
      pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)
      self.register_buffer("pe", pe)
      self.drop = nn.Dropout(cfg.dropout_rate)
      self.core = nn.Transformer(
          d,
          cfg.num_heads,
          cfg.num_encoder_layers,
          cfg.num_decoder_layers,
          cfg.d_ff,
          cfg.dropout_rate,
          batch_first=True,
      )

    def embed(self, table, ids):
      return self.drop(table(ids) * math.sqrt(cfg.d_model) + self.pe[: ids.shape[1]])

    def forward(self, x, y):
      mask = nn.Transformer.generate_square_subsequent_mask(y.shape[1], device=y.device)
      h = self.core(
          self.embed(self.src_emb, x),
          self.embed(self.tgt_emb, y),
          tgt_mask=mask,
          tgt_is_causal=True,
      )
      return h @ self.tgt_emb.weight.T  # tied output embedding

  torch.manual_seed(0)
  model = Seq2Seq().to(device).train()
  fused = compiled and device == "cuda"
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
  x = torch.from_numpy(src.astype(np.int64)).to(device)
  y = torch.from_numpy(tgt.astype(np.int64)).to(device)

  def loss_and_grads():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
      logits = model(x, y[:, :-1])
    loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), y[:, 1:].flatten())
    loss.backward()
    return loss

  forward_backward = torch.compile(loss_and_grads) if compiled else loss_and_grads

  def run():
    opt.zero_grad(set_to_none=True)
    loss = forward_backward()
    opt.step()
    return loss

  return run


def sync(result) -> None:
  """Wait for a step's device work (JAX array or torch tensor)."""
  if hasattr(result, "block_until_ready"):
    result.block_until_ready()
  else:
    result.item()


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--length", type=int, default=128, help="source = target tokens")
  parser.add_argument("--vocab", type=int, default=32000, help="source = target vocabulary")
  parser.add_argument("--layers", type=int, default=6, help="encoder = decoder depth")
  parser.add_argument("--d_model", type=int, default=512)
  parser.add_argument("--heads", type=int, default=8)
  parser.add_argument("--d_ff", type=int, default=2048)
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--impls", default="reference,fused", help="attention.implementation rows")
  parser.add_argument(
      "--prngs",
      default="",
      help="extra rows of the first dtype/impl with these dropout PRNGs, e.g. rbg,unsafe_rbg",
  )
  parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch rows")
  parser.add_argument(
      "--torch_rows", default="eager,compile", help="PyTorch rows: eager and/or compile"
  )
  parser.add_argument("--steps", type=int, default=10, help="steps per round and row")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
  parser.add_argument("--matmul_size", type=int, default=0, help="0: 8192 on GPU, 1024 on CPU")
  args = parser.parse_args()

  gpu = jax.default_backend() == "gpu"
  base = EncoderDecoderConfig(
      src_vocab_size=args.vocab,
      tgt_vocab_size=args.vocab,
      d_model=args.d_model,
      num_heads=args.heads,
      num_encoder_layers=args.layers,
      num_decoder_layers=args.layers,
      d_ff=args.d_ff,
      max_len=args.length + 1,
  )
  rng = np.random.default_rng(0)
  src = rng.integers(1, args.vocab, (args.batch, args.length)).astype(np.int32)
  tgt = rng.integers(1, args.vocab, (args.batch, args.length + 1)).astype(np.int32)
  flops = model_flops_per_step(base, args.batch, args.length)
  torch = None
  if not args.no_torch:
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
      print("torch not installed: no PyTorch rows")
  torch_device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
  if torch is not None and torch_device == "cpu":
    torch.set_num_threads(len(os.sched_getaffinity(0)))

  n = args.matmul_size or (8192 if gpu else 1024)
  probes = {"jax_fp32": jax_matmul(n, jnp.float32), "jax_bf16": jax_matmul(n, jnp.bfloat16)}
  if torch is not None:
    probes["torch_fp32"] = torch_matmul(n, "float32", torch_device)
    probes["torch_bf16"] = torch_matmul(n, "bfloat16", torch_device)
  rows: dict[str, Callable[[], object]] = {}
  for dtype in args.dtypes.split(","):
    for impl in args.impls.split(","):
      cfg = dataclasses.replace(base, dtype=dtype, attention=AttentionConfig(implementation=impl))
      rows[f"project {dtype} {impl}"] = project_step_fn(cfg, src, tgt)
  first = dataclasses.replace(
      base,
      dtype=args.dtypes.split(",")[0],
      attention=AttentionConfig(implementation=args.impls.split(",")[0]),
  )
  for prng in filter(None, args.prngs.split(",")):
    rows[f"project {first.dtype} {first.attention.implementation} {prng}"] = project_step_fn(
        first, src, tgt, prng
    )
  if torch is not None:
    for mode in args.torch_rows.split(","):
      for dtype in args.dtypes.split(","):
        bf16 = dtype == "bfloat16"
        name = f"torch {mode} {'bf16 autocast' if bf16 else 'float32'}"
        rows[name] = torch_step_fn(base, src, tgt, bf16=bf16, compiled=mode == "compile")
  losses = {}
  for name, run in [*probes.items(), *rows.items()]:  # compile / warm up
    for _ in range(2):
      out = run()
    if name in rows:
      sync(out)
      losses[name] = float(out.detach()) if hasattr(out, "detach") else float(out)

  peaks = {k: 0.0 for k in probes}
  rates: dict[str, list[float]] = {k: [] for k in rows}
  for _ in range(args.rounds):
    for name, matmul in probes.items():
      peaks[name] = max(peaks[name], 2 * n**3 / timed_best(matmul, 3))
    for name, run in rows.items():
      start = time.perf_counter()
      for _ in range(args.steps):
        out = run()
      sync(out)
      rates[name].append(args.steps / (time.perf_counter() - start))

  peak_bf16 = max(v for k, v in peaks.items() if k.endswith("bf16"))
  load = os.getloadavg()
  tokens = args.batch * args.length
  print(
      f"{jax.devices()[0].device_kind} (JAX {jax.__version__}, backend {jax.default_backend()}"
      + (f"; torch {torch.__version__} on {torch_device}" if torch is not None else "")
      + f"), batch {args.batch} x {args.length} tokens, {args.layers}+{args.layers} layers, "
      f"d_model {args.d_model}, d_ff {args.d_ff}, vocab {args.vocab}: "
      f"{flops / 1e12:.3f} model TFLOP per step; load average {load[0]:.1f}"
  )
  print(
      f"matmul peak (TFLOP/s, n={n}): " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in peaks.items())
  )
  results = {
      "device": jax.devices()[0].device_kind,
      "load_average_1min": round(load[0], 2),
      "model_tflop_per_step": round(flops / 1e12, 4),
      **{f"peak_tflops_{k}": round(v / 1e12, 2) for k, v in peaks.items()},
  }
  header = f"{'step':28s} {'steps/s':>8s} {'tokens/s':>9s} {'TFLOP/s':>8s} {'MFU':>6s}"
  print(header + "  (MFU: of the bf16 matmul peak above)  first loss")
  for name, r in rates.items():
    sps = float(np.median(r))
    tflops = sps * flops / 1e12
    mfu = sps * flops / peak_bf16
    print(
        f"{name:28s} {sps:8.2f} {sps * tokens:9.0f} {tflops:8.1f} {mfu:6.1%}"
        f"  {losses[name]:.3f}"
    )
    key = name.replace(" ", "_")
    results[f"{key}_steps_per_s"] = round(sps, 3)
    results[f"{key}_mfu"] = round(mfu, 4)
  peers = {"float32": "float32", "bfloat16": "bf16 autocast"}
  for name in rates:
    for mode in ("eager", "compile"):
      other = f"torch {mode} {peers.get(name.split()[1], '')}" if name.startswith("project") else ""
      if other in rates:
        ratio = float(np.median(np.array(rates[name]) / np.array(rates[other])))
        print(f"{name} / {other}: {ratio:.2f}x (median of per-round ratios)")
        results[f"{name.replace(' ', '_')}_over_torch_{mode}"] = round(ratio, 3)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
