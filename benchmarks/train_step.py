"""Training-step speed of the encoder classifier: JAX (jit) vs PyTorch eager, same model.

    python benchmarks/train_step.py                       # the configs/mnist.py model, batch 128
    python benchmarks/train_step.py --stem linear --pooling cls   # plain ViT patch embedding
    python benchmarks/train_step.py --batch 256 --layers 6 --d_model 128

Prints steps/s for both, the ratio, and model FLOPs per step (analytic, forward + backward =
3x forward matmul FLOPs) as a fraction of the machine's fp32 peak (--peak_gflops, default 330
for the 2-core Zen 5 CPU this project is developed on; pass your accelerator's peak for MFU).
PyTorch is only needed here (`pip install torch`); it is never a dependency of the package.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from transformer.models import ClassifierConfig, EncoderClassifier


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


def time_it(step, n_steps: int) -> float:
  step()  # compile / warm up
  step()
  start = time.perf_counter()
  for _ in range(n_steps):
    step()
  return (time.perf_counter() - start) / n_steps


def jax_step_fn(cfg: ClassifierConfig, images: np.ndarray, labels: np.ndarray):
  model = EncoderClassifier(cfg)
  params = model.init(jax.random.PRNGKey(0), images[:1])["params"]
  tx = optax.adamw(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  x, y = jnp.asarray(images), jnp.asarray(labels)
  state = {"p": params, "o": opt_state}

  def step():
    state["p"], state["o"], loss = train_step(state["p"], state["o"], x, y)
    loss.block_until_ready()

  return step


def torch_step_fn(cfg: ClassifierConfig, images: np.ndarray, labels: np.ndarray):
  import torch
  from torch import nn

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

  return step, torch.get_num_threads()


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
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--peak_gflops", type=float, default=330.0)
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

  results = {
      "device": str(jax.devices()[0].device_kind),
      "batch": args.batch,
      "stem": args.stem,
      "pooling": args.pooling,
      "model_gflops_per_step": flops / 1e9,
  }
  t_jax = time_it(jax_step_fn(cfg, images, labels), args.steps)
  results["jax_steps_per_s"] = 1.0 / t_jax
  results["jax_fraction_of_peak"] = flops / t_jax / (args.peak_gflops * 1e9)
  try:
    step, threads = torch_step_fn(cfg, images, labels)
  except ImportError:
    print("torch not installed: measuring JAX only (pip install torch to compare)")
  else:
    t_torch = time_it(step, args.steps)
    results.update(
        torch_threads=threads,
        torch_steps_per_s=1.0 / t_torch,
        torch_fraction_of_peak=flops / t_torch / (args.peak_gflops * 1e9),
        jax_speedup_over_torch_eager=t_torch / t_jax,
    )
  print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
  main()
