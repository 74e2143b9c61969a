"""One 3x3 convolution layer, forward and gradients: metajax's two paths against PyTorch's.

For each Conv-4 layer shape of a batch of ``--images`` Omniglot-sized inputs (28x28x1 -> 64,
14x14x64 -> 64, 7x7x64 -> 64, 3x3x64 -> 64; stride 1, SAME padding, shared weights), times
the forward pass, the gradient of ``sum(y ** 2)`` with respect to the kernel and the input,
and the kernel gradient alone, for

- ``matmul``: ``metajax.models._conv.conv2d``, the patches-and-matmul convolution that the
  models use on CPU (``conv="auto"``);
- ``xla``: ``jax.lax.conv_general_dilated`` (on CPU, XLA hands each of the three convolutions
  to YNNPACK; the kernel gradient becomes one with an output-sized window);
- ``torch``: ``torch.nn.functional.conv2d`` with autograd (oneDNN), ``--torch-threads`` threads.

Each column is one ``jax.jit`` program. Times are the best of ``--repeats`` calls after a
warm-up, in milliseconds.

    python benchmarks/bench_conv.py                 # 400 images: one ProtoNet 20w5s15q episode
    python benchmarks/bench_conv.py --images 40 --repeats 1     # a quick look

The layers are ProtoNet's (stride 1, max-pooling between blocks); the MAML rows of the suite use
stride-2 convolutions instead.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

LAYERS = ((28, 1, 64), (14, 64, 64), (7, 64, 64), (3, 64, 64))   # (height=width, in, out)


def best_ms(call, repeats: int) -> float:
  call()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return min(times) * 1e3


def time_jax(conv, x, w, repeats: int) -> tuple[float, float, float]:
  import jax
  import jax.numpy as jnp

  def loss(w, x):
    y = conv(x, w)
    return jnp.sum(y * y)

  forward = jax.jit(lambda w, x: conv(x, w))
  both = jax.jit(jax.grad(loss, argnums=(0, 1)))
  kernel = jax.jit(jax.grad(loss, argnums=0))
  return tuple(best_ms(lambda f=f: jax.block_until_ready(f(w, x)), repeats)
               for f in (forward, both, kernel))


def time_torch(x, w, repeats: int) -> tuple[float, float, float]:
  import torch
  from torch.nn import functional

  x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  w = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).requires_grad_(True)
  x_grad = x.clone().requires_grad_(True)

  def forward():
    with torch.no_grad():
      functional.conv2d(x, w, padding=1)

  def gradient(inputs):
    w.grad = None
    y = functional.conv2d(inputs, w, padding=1)
    (y * y).sum().backward()

  return (best_ms(forward, repeats), best_ms(lambda: gradient(x_grad), repeats),
          best_ms(lambda: gradient(x), repeats))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", type=int, default=400,
                      help="batch size of every layer (default 400: one 20w5s15q episode)")
  parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (default 5)")
  parser.add_argument("--torch-threads", type=int, default=len(os.sched_getaffinity(0)),
                      help="PyTorch's threads (default: the CPUs this process may use)")
  args = parser.parse_args()
  for name in ("images", "repeats", "torch_threads"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
  load = os.getloadavg()[0]
  from jax import lax

  from metajax.models._conv import conv2d

  try:
    import torch
    torch.set_num_threads(args.torch_threads)
  except ImportError:
    torch = None
    print("PyTorch is not installed (pip install torch): its column is left out.")
  paths = {
      "matmul": lambda x, w: conv2d(x, w, (1, 1), "SAME"),
      "xla": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC")),
  }
  rng = np.random.default_rng(0)
  import jax

  version = f"torch {torch.__version__}, {args.torch_threads} threads" if torch else "no torch"
  print(f"{args.images} images, best of {args.repeats} (ms); jax {jax.__version__}, {version}; "
        f"load average {load:.1f} before")
  print("| layer | path | forward | gradient (kernel, input) | kernel gradient |")
  print("|---|---|---|---|---|")
  for size, cin, cout in LAYERS:
    x = rng.standard_normal((args.images, size, size, cin), dtype=np.float32)
    w = (0.1 * rng.standard_normal((3, 3, cin, cout))).astype(np.float32)
    rows = {name: time_jax(conv, x, w, args.repeats) for name, conv in paths.items()}
    if torch is not None:
      rows["torch"] = time_torch(x, w, args.repeats)
    for name, (fwd, both, kernel) in rows.items():
      print(f"| {size}x{size}x{cin} -> {cout} | {name} | {fwd:.1f} | {both:.1f} | {kernel:.1f} |",
            flush=True)


if __name__ == "__main__":
  main()
