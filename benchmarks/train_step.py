"""Training-step speed of the encoder classifier, with the machine's measured matmul peak.

    python benchmarks/train_step.py                        # the configs/mnist.py model, batch 128
    taskset -c 0 python benchmarks/train_step.py           # one core (compare per-core speed)
    python benchmarks/train_step.py --stem linear --pooling cls   # plain ViT patch embedding
    python benchmarks/train_step.py --variants fused_qkv,direct_heads,microbatches=16

One run measures, interleaved round by round (so a busy machine slows all rows alike):
  peak     the largest fp32 and bf16 matmul throughput JAX and PyTorch reach here (GFLOP/s,
           fastest n x n matmul of 3 per round, best over the rounds);
  project  one jitted training step of transformer.classifier.EncoderClassifier + AdamW;
  minimal  the same math hand-written in plain JAX (benchmarks/minimal_vit.py), plus any
           --variants of it (candidate model-level speed-ups);
  torch    the same model in PyTorch eager (skipped when torch is not installed:
           `pip install torch --index-url https://download.pytorch.org/whl/cpu`; never a
           dependency of the package).
For each step: steps/s, achieved GFLOP/s (analytic model FLOPs: forward + backward = 3x the
forward matmul FLOPs) and the fraction of the machine's measured fp32 matmul peak; then the ratios
project/minimal and project/torch (medians of the per-round ratios) and the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from benchmarks import minimal_vit  # noqa: E402
from transformer.classifier import ClassifierConfig, EncoderClassifier  # noqa: E402


def model_flops_per_step(cfg: ClassifierConfig, batch: int) -> float:
  """Analytic matmul FLOPs of one training step (forward x 3 for forward + backward)."""
  n = cfg.num_tokens
  d, f = cfg.d_model, cfg.d_ff
  per_layer = 2 * n * (4 * d * d + 2 * d * f) + 2 * 2 * n * n * d  # projections+FFN, qk and av
  forward = cfg.num_layers * per_layer + 2 * d * cfg.num_classes
  if cfg.stem == "conv":  # stride-2 3x3 convs, then the 1x1 projection (see conv_stem)
    (h, w), c_in = cfg.image_size, cfg.channels
    for c_out in cfg.stem_widths:
      h, w = -(-h // 2), -(-w // 2)
      forward += 2 * h * w * 9 * c_in * c_out
      c_in = c_out
    forward += 2 * cfg.num_patches * c_in * d
  else:
    forward += 2 * cfg.num_patches * cfg.patch_size**2 * cfg.channels * d
  return 3.0 * forward * batch


# ---- matmul peak ---------------------------------------------------------------------------


def jax_matmul(n: int, dtype) -> Callable[[], None]:
  """One n x n x n matmul in JAX (compiled once)."""
  a = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  return lambda: matmul(a, a).block_until_ready()


def torch_matmul(n: int, dtype_name: str) -> Callable[[], None]:
  import torch  # pylint: disable=import-outside-toplevel

  a = torch.rand(n, n, dtype=getattr(torch, dtype_name))
  return lambda: torch.mm(a, a)


def best_gflops(matmul: Callable[[], None], n: int, repeats: int) -> float:
  """GFLOP/s of the fastest of `repeats` calls (the peak: the least disturbed call)."""
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


# ---- training steps ------------------------------------------------------------------------


def project_step_fn(cfg: ClassifierConfig, images: np.ndarray, labels: np.ndarray):
  """The project's model and AdamW, one jitted step (as experiments/core/trainer.py compiles it)."""
  model = EncoderClassifier(cfg)
  params = model.init(jax.random.PRNGKey(0), images[:1])["params"]
  tx = optax.adamw(1e-3)

  def train_step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return _jax_runner(jax.jit(train_step, donate_argnums=(0, 1)), params, tx, images, labels)


def minimal_step_fn(
    cfg: ClassifierConfig, images: np.ndarray, labels: np.ndarray, variant: minimal_vit.Variant
):
  params = minimal_vit.init_params(jax.random.PRNGKey(0), cfg, variant)
  tx, step = minimal_vit.make_train_step(cfg, variant)
  return _jax_runner(jax.jit(step, donate_argnums=(0, 1)), params, tx, images, labels)


def _jax_runner(step, params, tx, images, labels) -> Callable[[], None]:
  x, y = jnp.asarray(images), jnp.asarray(labels)
  state = {"p": params, "o": tx.init(params)}

  def run():
    state["p"], state["o"], loss = step(state["p"], state["o"], x, y)
    loss.block_until_ready()

  # The optimized HLO of the step (benchmarks/profile_step.py reads its op metadata).
  run.hlo_text = lambda: step.lower(state["p"], state["o"], x, y).compile().as_text()
  return run


def torch_step_fn(cfg: ClassifierConfig, images: np.ndarray, labels: np.ndarray):
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  class Block(nn.Module):

    def __init__(self):
      super().__init__()
      d = cfg.d_model
      self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
      self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
      self.ffn = nn.Sequential(nn.Linear(d, cfg.d_ff), nn.ReLU(), nn.Linear(cfg.d_ff, d))

    def forward(self, x):
      b, n, d = x.shape
      h = self.ln1(x)
      heads = lambda t: t.view(b, n, cfg.num_heads, -1).transpose(1, 2)  # noqa: E731
      a = nn.functional.scaled_dot_product_attention(
          heads(self.q(h)), heads(self.k(h)), heads(self.v(h))
      )
      x = x + self.o(a.transpose(1, 2).reshape(b, n, d))
      return x + self.ffn(self.ln2(x))

  class ViT(nn.Module):

    def __init__(self):
      super().__init__()
      d = cfg.d_model
      if cfg.stem == "conv":
        widths = [cfg.channels, *cfg.stem_widths]
        self.stem = nn.Sequential(
            *[
                layer
                for c_in, c_out in zip(widths, widths[1:])
                for layer in (nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU())
            ]
        )
        self.embed = nn.Linear(widths[-1], d)
      else:
        self.embed = nn.Linear(cfg.patch_size**2 * cfg.channels, d)
      self.cls = nn.Parameter(torch.zeros(1, 1, d))
      self.pos = nn.Parameter(torch.zeros(1, cfg.num_tokens, d))
      self.blocks = nn.ModuleList(Block() for _ in range(cfg.num_layers))
      self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, cfg.num_classes)

    def forward(self, images):
      b, hgt, wid, c = images.shape
      p = cfg.patch_size
      if cfg.stem == "conv":
        x = self.stem(images.permute(0, 3, 1, 2))  # [b, c, h/p, w/p]
        x = self.embed(x.flatten(2).transpose(1, 2))
      else:
        x = images.reshape(b, hgt // p, p, wid // p, p, c).permute(0, 1, 3, 2, 4, 5)
        x = self.embed(x.reshape(b, -1, p * p * c))
      if cfg.pooling == "cls":
        x = torch.cat([self.cls.expand(b, -1, -1), x], 1)
      x = x + self.pos
      for blk in self.blocks:
        x = blk(x)
      x = self.ln(x)
      return self.head(x[:, 0] if cfg.pooling == "cls" else x.mean(1))

  torch.manual_seed(0)
  model = ViT()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
  x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

  def step():
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  return step


def parse_variant(text: str) -> minimal_vit.Variant:
  """'fused_qkv' | 'direct_heads' | 'microbatches=16', '+'-joined for several."""
  kwargs = {}
  fields = {f.name: f.type for f in dataclasses.fields(minimal_vit.Variant)}
  for item in text.split("+"):
    name, _, value = item.partition("=")
    if name not in fields:
      raise SystemExit(f"unknown variant {name!r}; choose from {sorted(fields)}")
    kwargs[name] = int(value) if value else True
  return minimal_vit.Variant(**kwargs)


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--d_model", type=int, default=64)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--d_ff", type=int, default=128)
  parser.add_argument("--patch", type=int, default=4)
  parser.add_argument("--stem", default="conv", choices=["conv", "linear"])
  parser.add_argument("--pooling", default="mean", choices=["mean", "cls"])
  parser.add_argument("--steps", type=int, default=10, help="steps per round and row")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
  parser.add_argument("--matmul_size", type=int, default=1024, help="n of the n x n peak matmul")
  parser.add_argument(
      "--variants",
      default="",
      help="comma-separated extra minimal rows, e.g. fused_qkv,direct_heads+microbatches=16",
  )
  args = parser.parse_args()

  cfg = ClassifierConfig(
      patch_size=args.patch,
      d_model=args.d_model,
      num_heads=args.heads,
      num_layers=args.layers,
      d_ff=args.d_ff,
      dropout_rate=0.0,
      stem=args.stem,
      pooling=args.pooling,
  )
  rng = np.random.default_rng(0)
  images = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
  labels = rng.integers(0, 10, args.batch).astype(np.int32)
  flops = model_flops_per_step(cfg, args.batch)
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    torch = None
    print(
        "torch not installed: no PyTorch rows "
        "(pip install torch --index-url https://download.pytorch.org/whl/cpu)"
    )

  if torch is not None:  # as many threads as usable cores (respects taskset), like XLA
    torch.set_num_threads(len(os.sched_getaffinity(0)))
  n = args.matmul_size
  probes = {"jax_fp32": jax_matmul(n, jnp.float32), "jax_bf16": jax_matmul(n, jnp.bfloat16)}
  if torch is not None:
    probes.update(torch_fp32=torch_matmul(n, "float32"), torch_bf16=torch_matmul(n, "bfloat16"))
  for matmul in probes.values():  # compile / warm up
    matmul()
  peaks = {k: 0.0 for k in probes}

  rows: dict[str, Callable[[], None]] = {
      "project": project_step_fn(cfg, images, labels),
      "minimal": minimal_step_fn(cfg, images, labels, minimal_vit.Variant()),
  }
  for text in filter(None, args.variants.split(",")):
    rows[f"minimal+{text}"] = minimal_step_fn(cfg, images, labels, parse_variant(text))
  if torch is not None:
    rows["torch"] = torch_step_fn(cfg, images, labels)
  for run in rows.values():  # compile / warm up
    run()
    run()

  rates: dict[str, list[float]] = {k: [] for k in rows}
  for _ in range(args.rounds):
    for name, matmul in probes.items():  # the peak is re-measured every round: best of all
      peaks[name] = max(peaks[name], best_gflops(matmul, n, 3))
    for name, run in rows.items():
      start = time.perf_counter()
      for _ in range(args.steps):
        run()
      rates[name].append(args.steps / (time.perf_counter() - start))

  peak_fp32 = max(v for k, v in peaks.items() if k.endswith("fp32"))
  load = os.getloadavg()
  print(
      f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores visible to Python, "
      f"{len(os.sched_getaffinity(0))} usable), batch {args.batch}, stem {args.stem}, pooling "
      f"{args.pooling}: {flops / 1e9:.2f} model GFLOP per step; load average {load[0]:.1f}"
  )
  print("matmul peak (GFLOP/s, n=%d): " % n + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
  results = {
      "load_average_1min": round(load[0], 2),
      "model_gflops_per_step": round(flops / 1e9, 3),
      **{f"peak_gflops_{k}": round(v, 1) for k, v in peaks.items()},
  }
  print(f"{'step':34s} {'steps/s':>8s} {'GFLOP/s':>8s} {'of fp32 peak':>13s}")
  for name, r in rates.items():
    sps = float(np.median(r))
    print(f"{name:34s} {sps:8.2f} {sps * flops / 1e9:8.1f} {sps * flops / 1e9 / peak_fp32:12.1%}")
    results[f"{name}_steps_per_s"] = round(sps, 3)
    results[f"{name}_fraction_of_peak"] = round(sps * flops / 1e9 / peak_fp32, 4)
  for other in [k for k in rates if k != "project"]:
    ratio = float(np.median(np.array(rates["project"]) / np.array(rates[other])))
    print(f"project / {other}: {ratio:.2f}x (median of per-round ratios)")
    results[f"project_over_{other}"] = round(ratio, 3)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
