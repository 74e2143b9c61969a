"""Where one compiled step's time goes: XLA operations grouped by kind, from a JAX profile.

Runs a benchmark-suite workload's meta-step (``run_all.py --workloads`` names) or an RL² PPO
step (``rl2``, as ``bench_rl2.py``) a few times under :func:`jax.profiler.trace`, reads the
trace back with :class:`jax.profiler.ProfileData` and prints, per kind of XLA operation (an
operation's name without its numeric suffix: ``ynn_fusion`` for the matmuls and convolutions
XLA:CPU hands to YNNPACK, ``dot``, ``copy``, loop fusions named after their ops),
the milliseconds per step summed over XLA's threads, the number of operations per step and
the share of the total (loops and conditionals are left out: their spans cover their bodies'
operations, which are counted).

    python benchmarks/profile_step.py omniglot_protonet_20w5s
    python benchmarks/profile_step.py omniglot_maml_5w1s --conv xla
    python benchmarks/profile_step.py rl2 --pulls 10 --hidden 64

CPU only: XLA:CPU's worker threads record one event per operation; on a GPU the operations
are kernels on the device and the script stops with an error. Tracing adds a cost to every
operation, so steps made of many small operations (RL²: ~14,000 per PPO step at n=10) run
slower traced (1.6x there); the untraced step time, printed first, is the real one, and the
untraced wall time per operation is that time over the operation count (operations on
different threads can overlap). Shares are of the traced time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_step(args):
  """``(step, state)``: a compiled ``step(state) -> state`` and its first state."""
  import jax

  if args.workload == "rl2":
    import metajax.envs as envs
    from metajax.algorithms.rl2 import rl2

    env = envs.bernoulli_bandit(arms=args.arms, pulls=args.pulls)
    learner = rl2(env, episodes=args.pulls, hidden=args.hidden, tasks_per_step=args.tasks,
                  epochs=4, minibatches=4, gamma=1.0, gae_lambda=0.3)
    key = jax.random.key(1)
    return (lambda s: learner.train_step(s, key)[0]), learner.init(jax.random.key(0))

  sys.path.insert(0, str(HERE))
  import _workloads

  import metajax
  from metajax.core.meta_step import meta_update, select_batching

  workload = _workloads.WORKLOADS[args.workload]
  tasks = _workloads.make_tasks(workload)
  model = _workloads.make_model(workload, conv=args.conv)
  learner = _workloads.make_learner(workload, model)
  optimizer = _workloads.outer_optimizer()
  state = metajax.init_meta_state(learner, optimizer)
  key = jax.random.key(2)
  mode = select_batching(learner, state.params, tasks) if args.batching == "auto" else args.batching
  compiled = jax.jit(meta_update(learner, optimizer, batching=mode)).lower(
      state, tasks, key).compile()
  return (lambda s: compiled(s, tasks, key)[0]), state


CONTAINERS = ("while", "conditional", "call")


def kind(name: str) -> str:
  """``"ynn_fusion.13"`` -> ``"ynn_fusion"``."""
  return re.sub(r"(\.\d+)+$", "", name)


def profile(step, state, steps: int, trace_dir: str):
  """Untraced ms per step, then ``{kind: (ns per step, operations per step)}`` from a trace."""
  import jax
  from jax.profiler import ProfileData

  for _ in range(2):
    state = step(state)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state = step(state)
  jax.block_until_ready(state)
  untraced_ms = (time.perf_counter() - start) / steps * 1e3
  with jax.profiler.trace(trace_dir):
    for _ in range(steps):
      state = step(state)
    jax.block_until_ready(state)
  files = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
  if not files:
    raise RuntimeError(f"jax.profiler.trace wrote no .xplane.pb under {trace_dir}")
  ns, count = collections.Counter(), collections.Counter()
  for plane in ProfileData.from_file(files[0]).planes:
    for line in plane.lines:
      # XLA's threads ("tf_XLA...") carry one event per operation; the Python thread's
      # events (the script's own calls) are left out.
      if not line.name.startswith("tf_XLA"):
        continue
      for event in line.events:
        if "::" in event.name or event.name.startswith("end: "):
          continue   # the runtime's own spans (ThunkExecutor::Execute, thread-pool waits)
        if kind(event.name) in CONTAINERS:   # spans over their bodies' operations
          continue
        ns[kind(event.name)] += event.duration_ns
        count[kind(event.name)] += 1
  if not ns:
    raise RuntimeError(
        f"the trace in {trace_dir} has no per-operation events of XLA's CPU threads; "
        f"profile_step.py reads XLA:CPU traces only (backend here: {jax.default_backend()}). "
        "Run it with JAX_PLATFORMS=cpu.")
  table = {k: (ns[k] / steps, count[k] / steps) for k in ns}
  return untraced_ms, table


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workload", help="a run_all.py workload name, or rl2")
  parser.add_argument("--conv", default="auto", choices=("auto", "matmul", "xla"),
                      help="metajax convolution of the Conv-4/ResNet-12 workloads (default auto)")
  parser.add_argument("--batching", default="auto", choices=("auto", "map", "vmap", "unrolled"),
                      help="task batching of the suite workloads (default auto)")
  parser.add_argument("--steps", type=int, default=4, help="steps timed and traced (default 4)")
  parser.add_argument("--top", type=int, default=20, help="kinds printed (default 20)")
  parser.add_argument("--arms", type=int, default=5, help="rl2 only: bandit arms (default 5)")
  parser.add_argument("--pulls", type=int, default=10,
                      help="rl2 only: pulls per trial (default 10)")
  parser.add_argument("--hidden", type=int, default=64, help="rl2 only: GRU width (default 64)")
  parser.add_argument("--tasks", type=int, default=128,
                      help="rl2 only: trials per PPO step (default 128)")
  args = parser.parse_args()
  for name in ("steps", "top", "arms", "pulls", "hidden", "tasks"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
  if args.workload == "rl2" and (args.conv, args.batching) != ("auto", "auto"):
    parser.error("--conv and --batching apply to the suite workloads, not to rl2; leave them out")
  load = os.getloadavg()[0]
  if args.workload != "rl2":
    sys.path.insert(0, str(HERE))
    import _workloads

    if args.workload not in _workloads.WORKLOADS:
      parser.error(f"workload must be rl2 or one of {sorted(_workloads.WORKLOADS)}, "
                   f"got {args.workload!r}")
  import jax

  step, state = build_step(args)
  with tempfile.TemporaryDirectory() as trace_dir:
    untraced_ms, table = profile(step, state, args.steps, trace_dir)
  total_ns = sum(ns for ns, _ in table.values())
  operations = sum(n for _, n in table.values())
  print(f"{args.workload} on {jax.devices()[0].device_kind} "
        f"({len(os.sched_getaffinity(0))} CPUs usable), load average {load:.1f} before")
  print(f"untraced step {untraced_ms:.1f} ms; {operations:,.0f} XLA operations per step "
        f"(untraced wall time per operation {untraced_ms * 1e3 / max(operations, 1):.2f} us); "
        f"traced operation time {total_ns / 1e6:.1f} ms per step, summed over threads")
  print("| kind | ms per step | operations per step | share |")
  print("|---|---|---|---|")
  for name, (ns, n) in sorted(table.items(), key=lambda kv: -kv[1][0])[:args.top]:
    print(f"| {name} | {ns / 1e6:.2f} | {n:,.0f} | {ns / max(total_ns, 1):.1%} |")


if __name__ == "__main__":
  main()
