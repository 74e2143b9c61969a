"""Episode sampler throughput on Omniglot (Vinyals train split), 20-way 5-shot 15-query, B=32.

Run: ``python benchmarks/bench_sampler.py [--batches 50] [--batch-size 32]``. Compares the device
sampler (what metajax ships) with a plain numpy host sampler over the same arrays, the measurement
behind the choice in ``metajax/data/sampler.py``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from metajax.data import episode_sampler, load_omniglot


def host_numpy_batch(images: np.ndarray, rng: np.random.Generator, ways, shots, queries, batch):
  n_classes, per_class = images.shape[:2]
  classes = np.stack([rng.choice(n_classes, ways, replace=False) for _ in range(batch)])
  order = rng.permuted(np.broadcast_to(np.arange(per_class), (batch, ways, per_class)), axis=-1)
  x = images[classes[..., None], order[..., : shots + queries]].astype(np.float32) / 255.0
  support = x[:, :, :shots].reshape(batch, ways * shots, *images.shape[2:])
  query = x[:, :, shots:].reshape(batch, ways * queries, *images.shape[2:])
  return jax.device_put((support, query))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batches", type=int, default=50)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--ways", type=int, default=20)
  parser.add_argument("--shots", type=int, default=5)
  parser.add_argument("--queries", type=int, default=15)
  args = parser.parse_args()
  shape = dict(ways=args.ways, shots=args.shots, queries=args.queries)
  train = load_omniglot("train")
  print(
    f"{jax.devices()[0].platform}: Omniglot train {train.images.shape}, {shape}, "
    f"batch {args.batch_size}"
  )

  sampler = episode_sampler(train, batch_size=args.batch_size, **shape)
  key = jax.random.key(0)
  jax.block_until_ready(sampler.sample(key))  # compile
  start = time.perf_counter()
  batch = None
  for batch in sampler.iterate(key, num_batches=args.batches):  # noqa: B007 (keep the last)
    pass
  jax.block_until_ready(batch)
  seconds = time.perf_counter() - start
  rate = args.batches / seconds
  print(f"device sampler: {rate:8.1f} task batches/s = {rate * args.batch_size:8.0f} episodes/s")

  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for _ in range(args.batches):
    batch = host_numpy_batch(train.images, rng, batch=args.batch_size, **shape)
  jax.block_until_ready(batch)
  rate = args.batches / (time.perf_counter() - start)
  print(f"numpy host    : {rate:8.1f} task batches/s = {rate * args.batch_size:8.0f} episodes/s")


if __name__ == "__main__":
  main()
