"""Sinusoid MAML: metajax's meta-step against a hand-written plain-JAX meta-step.

Same workload, same data, same optimizer; prints meta-steps/s (median of
several timed runs after warm-up), compile time and peak memory, and the
ratio metajax / plain JAX (the overhead of the abstraction).

Run:
  python benchmarks/bench_core.py            # 1 and 5 inner steps
  python benchmarks/bench_core.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import metajax

META_BATCH, SHOTS, INNER_LR = 25, 10, 0.01


def plain_jax_meta_step(inner_steps: int, optimizer: optax.GradientTransformation):
  """MAML written directly with jax.grad and vmap: the reference implementation."""

  def forward(params, x):
    for w, b in params[:-1]:
      x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b

  def mse(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)

  def task_loss(params, sx, sy, qx, qy):
    adapted = params
    for _ in range(inner_steps):
      grads = jax.grad(mse)(adapted, sx, sy)
      adapted = jax.tree.map(lambda p, g: p - INNER_LR * g, adapted, grads)
    return mse(adapted, qx, qy)

  def step(params, opt_state, tasks):
    def batch_loss(p):
      return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(p, *tasks))

    loss, grads = jax.value_and_grad(batch_loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def init_plain(key):
  sizes = [1, 40, 40, 1]
  keys = jax.random.split(key, len(sizes) - 1)
  return [(jax.random.normal(k, (a, b)) * (1.0 / a) ** 0.5, jnp.zeros(b))
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def time_calls(call, n_calls: int, repeats: int) -> float:
  """Median steps/s over ``repeats`` timed runs of ``n_calls`` calls."""
  return time_interleaved({"call": call}, n_calls, repeats)["call"]


def time_interleaved(calls: dict, n_calls: int, repeats: int) -> dict[str, float]:
  """Median steps/s of each callable, timed in alternating blocks.

  Alternating blocks expose every implementation to the same machine load, so the
  ratio stays meaningful on a shared, noisy machine.
  """
  rates = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      out = None
      for _ in range(n_calls):
        out = call()
      jax.block_until_ready(out)
      rates[name].append(n_calls / (time.perf_counter() - start))
  return {name: statistics.median(r) for name, r in rates.items()}


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(inner_steps: int, n_calls: int, repeats: int) -> dict:
  optimizer = optax.adam(1e-3)
  tasks = metajax.data.sinusoid_tasks(jax.random.key(0), batch_size=META_BATCH, shots=SHOTS)
  results = {}

  # metajax.
  model = metajax.models.mlp_model([40, 40], 1, jax.random.key(1), input_dim=1)
  learner = metajax.maml(model, inner_lr=INNER_LR, steps=inner_steps, loss="mse")
  meta_step = metajax.make_meta_step(learner, optimizer)
  state = metajax.init_meta_state(learner, optimizer)
  key = jax.random.key(2)
  start = time.perf_counter()
  state, _ = meta_step(state, tasks, key)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  holder = [state]

  def metajax_call():
    holder[0], metrics = meta_step(holder[0], tasks, key)
    return metrics["loss"]

  results["metajax"] = {"compile_s": compile_s, "batching": meta_step.batching}

  # Plain JAX.
  plain_step = plain_jax_meta_step(inner_steps, optimizer)
  params = init_plain(jax.random.key(1))
  opt_state = optimizer.init(params)
  batch = (tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y)
  start = time.perf_counter()
  params, opt_state, loss = plain_step(params, opt_state, batch)
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - start
  plain_holder = [params, opt_state]

  def plain_call():
    plain_holder[0], plain_holder[1], loss = plain_step(*plain_holder, batch)
    return loss

  results["plain_jax"] = {"compile_s": compile_s}
  rates = time_interleaved({"metajax": metajax_call, "plain_jax": plain_call}, n_calls, repeats)
  for impl, rate in rates.items():
    results[impl]["steps_per_s"] = rate
  results["ratio_metajax_to_plain"] = (results["metajax"]["steps_per_s"]
                                       / results["plain_jax"]["steps_per_s"])
  results["peak_rss_mib"] = peak_rss_mib()
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--calls", type=int, default=200, help="meta-steps per timed block")
  parser.add_argument("--repeats", type=int, default=10,
                      help="alternating timed blocks per implementation (median reported)")
  parser.add_argument("--json", help="write results to this JSON file")
  args = parser.parse_args()
  rows = {}
  print(f"backend={jax.default_backend()} devices={jax.devices()}")
  print("| workload | impl | meta-steps/s | compile s | metajax/plain |")
  print("|---|---|---|---|---|")
  for inner_steps in (1, 5):
    result = bench(inner_steps, args.calls, args.repeats)
    rows[f"sinusoid_maml_{inner_steps}step"] = result
    for impl in ("metajax", "plain_jax"):
      r = result[impl]
      ratio = f"{result['ratio_metajax_to_plain']:.3f}" if impl == "metajax" else ""
      print(f"| sinusoid MAML, {inner_steps} inner step(s) | {impl} | {r['steps_per_s']:.0f} | "
            f"{r['compile_s']:.2f} | {ratio} |")
  print(f"peak RSS: {peak_rss_mib():.0f} MiB (process)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
