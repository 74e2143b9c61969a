"""Streaming (array_record + grain) versus in-memory episode sampling, and a memory bound.

Run: ``python benchmarks/bench_streaming.py [--classes 200 --per-class 100 --size 84]
[--batches 20] [--rss-budget-mb 200]``.

1. Throughput: a synthetic source (random uint8 images) is held in memory and written to an
   array_record file; episodes/s of the in-memory samplers and of the streaming sampler (the
   same episodes, read through grain with prefetching) for 5-way 1-shot 15-query episodes and
   for the Meta-Dataset protocol (5-50 ways, up to 500 support and 10 queries per class).
2. Memory: a second synthetic file, 10x larger than ``--rss-budget-mb``, is written class by
   class (never whole in memory), then a fresh process streams Meta-Dataset batches from it and
   reports how much its peak RSS grew over its own baseline (after imports and compilation):
   that growth must stay below the budget. What streaming holds does not depend on the file's
   size: grain's ``prefetch`` batches ahead, the batch in use and the one being converted (its
   uint8 read, then float32). A padded Meta-Dataset episode at 84x84 RGB is 1,000 images, 85 MB
   in float32, so the default budget is 500 MB (a 5 GB file); the script prints that
   size-independent estimate, ``(prefetch + 3) x float32 batch + uint8 batch``, beside the
   measured growth.

Numbers depend on the disk, the page cache and the machine's load; print ``/proc/loadavg``
beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np


def synthetic_classes(classes: int, per_class: int, shape: tuple[int, int, int], seed: int):
  rng = np.random.default_rng(seed)
  for c in range(classes):
    yield f"class{c:05d}", rng.integers(0, 256, (per_class, *shape), dtype=np.uint8)


def episodes_per_second(sample, batches: int, batch_size: int) -> float:
  jax.block_until_ready(sample(jax.random.key(10_000)))  # compile and warm up
  began = time.perf_counter()
  for i in range(batches):
    jax.block_until_ready(sample(jax.random.key(i)))
  return batches * batch_size / (time.perf_counter() - began)


def streamed_per_second(sampler, batches: int, batch_size: int) -> float:
  """Steady state through grain: the first batch (thread start-up, compilation) is not timed."""
  iterator = sampler.iterate(jax.random.key(0), num_batches=batches + 1)
  jax.block_until_ready(next(iterator))
  began = time.perf_counter()
  for tasks in iterator:
    jax.block_until_ready(tasks)
  return batches * batch_size / (time.perf_counter() - began)


def throughput(args, folder: Path) -> list[dict]:
  from metajax.data import episode_sampler, from_class_lists, streaming
  from metajax.data import meta_dataset as md

  shape = (args.size, args.size, 3)
  names, arrays = zip(*synthetic_classes(args.classes, args.per_class, shape, 0))
  dataset = from_class_lists(arrays, names, name="synthetic")
  source = streaming.open_source(streaming.write_source(dataset, folder / "small"))
  rows = []
  for label, in_memory, episodes in (
      ("5w1s15q", episode_sampler(dataset, ways=5, shots=1, queries=15,
                                  batch_size=args.batch_size), streaming.FixedShape(5, 1, 15)),
      ("meta-dataset", md.meta_dataset_sampler(dataset, batch_size=args.batch_size),
       md.META_DATASET)):
    stream = streaming.StreamingSampler(source, batch_size=args.batch_size, episodes=episodes)
    rows.append({
        "episodes": label,
        "in_memory_eps": episodes_per_second(in_memory.sample, args.batches, args.batch_size),
        "streaming_eps": streamed_per_second(stream, args.batches, args.batch_size),
    })
  return rows


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


def stream_child(directory: str, batches: int, batch_size: int) -> None:
  """Runs in a fresh process: streams batches and prints its RSS growth as JSON."""
  from metajax.data import streaming

  source = streaming.open_source(directory)
  sampler = streaming.StreamingSampler(source, batch_size=batch_size)
  jax.block_until_ready(sampler.sample(jax.random.key(99)))  # compile first
  baseline = peak = current_rss_mb()
  began = time.perf_counter()
  for tasks in sampler.iterate(jax.random.key(0), num_batches=batches):
    jax.block_until_ready(tasks)
    peak = max(peak, current_rss_mb())
  elapsed = time.perf_counter() - began
  print(json.dumps({"baseline_rss_mb": baseline, "peak_rss_mb": peak,
                    "lifetime_peak_rss_mb": peak_rss_mb(), "final_rss_mb": current_rss_mb(),
                    "episodes_per_s": batches * batch_size / elapsed}))


def memory_bound(args, folder: Path) -> dict:
  from metajax.data import streaming

  shape = (args.size, args.size, 3)
  image_bytes = int(np.prod(shape))
  target_bytes = 10 * args.rss_budget_mb * 2**20
  classes = max(5, -(-target_bytes // (image_bytes * args.per_class)))
  directory = streaming.write_classes(synthetic_classes(classes, args.per_class, shape, 1),
                                      folder / "large", image_shape=shape, name="large")
  file_mb = (directory / streaming.RECORDS).stat().st_size / 2**20
  # array_record reads with a thread pool; glibc gives each thread its own malloc arena, which
  # alone grew RSS by ~40 MB in 300 random reads here. Two arenas keep the growth to the data.
  env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
  out = subprocess.run([sys.executable, __file__, "--child", str(directory), "--memory-batches",
                        str(args.memory_batches), "--batch-size", str(args.batch_size)],
                       check=True, capture_output=True, text=True, env=env)
  child = json.loads(out.stdout.strip().splitlines()[-1])
  # The child samples VmRSS after every batch; the growth over its baseline (imports, the
  # compiled sampler) is what streaming added.
  growth = child["peak_rss_mb"] - child["baseline_rss_mb"]
  from metajax.data import meta_dataset as md

  rows = md.META_DATASET.max_support + min(md.META_DATASET.max_ways, classes) * (
      md.META_DATASET.max_query)
  batch_mb = args.batch_size * rows * image_bytes / 2**20  # uint8
  prefetch = 2  # StreamingSampler.iterate's default
  estimate = (prefetch + 3) * 4 * batch_mb + batch_mb
  return {"file_mb": file_mb, "classes": classes, "budget_mb": args.rss_budget_mb,
          "float32_batch_mb": 4 * batch_mb, "buffer_estimate_mb": estimate,
          "rss_growth_mb": growth, **child, "within_budget": growth < args.rss_budget_mb}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--classes", type=int, default=200)
  parser.add_argument("--per-class", type=int, default=100)
  parser.add_argument("--size", type=int, default=84, help="image side (RGB)")
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=1)
  parser.add_argument("--rss-budget-mb", type=int, default=500)
  parser.add_argument("--memory-batches", type=int, default=20)
  parser.add_argument("--skip-memory", action="store_true")
  parser.add_argument("--skip-throughput", action="store_true")
  parser.add_argument("--child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    stream_child(args.child, args.memory_batches, args.batch_size)
    return
  print(f"backend {jax.default_backend()}, load average {os.getloadavg()}")
  with tempfile.TemporaryDirectory(prefix="bench_streaming_") as tmp:
    for row in [] if args.skip_throughput else throughput(args, Path(tmp)):
      print(f"{row['episodes']:>13}: in-memory {row['in_memory_eps']:8.1f} episodes/s, "
            f"streaming {row['streaming_eps']:8.1f} episodes/s")
    if not args.skip_memory:
      result = memory_bound(args, Path(tmp))
      print(f"memory: {result['file_mb']:.0f} MB file ({result['classes']} classes), RSS budget "
            f"{result['budget_mb']} MB: RSS grew {result['rss_growth_mb']:.1f} MB while "
            f"streaming (baseline {result['baseline_rss_mb']:.0f} MB, peak "
            f"{result['peak_rss_mb']:.0f} MB), {result['episodes_per_s']:.1f} episodes/s -> "
            + ("within budget" if result["within_budget"] else "OVER BUDGET"))
      print(f"        a float32 batch is {result['float32_batch_mb']:.0f} MB; buffers held "
            f"whatever the file size: <= {result['buffer_estimate_mb']:.0f} MB (estimate)")
  print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
  main()
