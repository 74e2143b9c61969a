"""A metric learner's static class width: the support size (before 1a293c7) vs the episode's ways.

Without ``ways`` a metric learner scores as many class columns as there are support examples, so
a K-shot episode carries K times as many columns as classes; a Relation Network then runs its
relation module on K times as many pairs. This script times the compiled meta-step of a config
with both widths on the same real Omniglot episodes: median meta-steps/s of several timed runs
after a warm-up call, and compile time.

Run:
  python benchmarks/bench_class_width.py                  # Relation Net 5w5s
  python benchmarks/bench_class_width.py configs/protonet_omniglot.py:5w5s --repeats 3
"""

from __future__ import annotations

import argparse
import time

import jax
from run_all import _timed_rates

from metajax import init_meta_state
from metajax.core.meta_step import make_meta_step
from metajax.data.sampler import episode_sampler
from metajax.train import load_config, registry


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("config", nargs="?", default="configs/relation_net_omniglot.py:5w5s")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs per width")
  parser.add_argument("--target-s", type=float, default=2.0, help="seconds per timed run")
  args = parser.parse_args()

  config = load_config(args.config, [])
  sampler = episode_sampler(registry.load_split(config, config.train_split), ways=config.ways,
                            shots=config.shots, queries=config.queries,
                            batch_size=config.meta_batch)
  tasks = next(sampler.iterate(jax.random.key(0)))
  optimizer = registry.build_optimizer(config)
  print(f"{args.config}: {config.ways}-way {config.shots}-shot, {config.queries} queries per "
        f"class, {jax.default_backend()}")
  rates = {}
  for label, ways in (("support size", config.ways * config.shots),
                      ("episode ways", config.ways)):
    learner = registry.build_learner(config, jax.random.key(0), ways=ways)
    state = [init_meta_state(learner, optimizer)]
    step = make_meta_step(learner, optimizer, batching=config.batching)
    start = time.perf_counter()
    state[0], metrics = step(state[0], tasks, jax.random.key(1))
    jax.block_until_ready(metrics)
    first_s = time.perf_counter() - start

    def call(step=step, state=state):
      state[0], metrics = step(state[0], tasks, jax.random.key(1))
      return metrics["loss"]

    rates[label], n_calls = _timed_rates(call, jax.block_until_ready, args.repeats, args.target_s)
    print(f"  width = {label} ({ways} columns): {rates[label]:.2f} meta-steps/s "
          f"(median of {args.repeats} runs of {n_calls} steps; first call incl. compile "
          f"{first_s:.1f} s)")
  print(f"  speed-up: {rates['episode ways'] / rates['support size']:.2f}x")


if __name__ == "__main__":
  main()
