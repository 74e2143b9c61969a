"""XLA temp memory of one task's meta-gradient against inner steps: MAML, MAML+remat, iMAML.

Second-order MAML keeps every inner step's activations for the backward pass, so its memory
grows with the inner steps; rematerialisation (``remat=True``) trades that for recomputation;
iMAML (:func:`metajax.imaml`) never differentiates the inner loop (the implicit function theorem
needs only the adapted weights), so its memory should stay flat. The numbers are XLA's own
accounting of the compiled ``task_grad`` of one task
(``jax.jit(task_grad).lower(...).compile().memory_analysis()``): they describe the program,
need no run, and do not depend on machine load.

Measured (2026-11-29, CPU backend, jax 0.10.2; compile-only, so the machine's load average of
~13-17 at the time does not enter the numbers): Omniglot 20w1s, Conv-4 64 filters (stride-2),
one task with 1 support and 5 query images per class, XLA temp MiB at 5 / 20 / 50 / 100 inner
steps:

  | variant    |     5 |    20 |    50 |     100 | 100 / 5 |
  |------------|-------|-------|-------|---------|---------|
  | maml       | 87.96 | 252.4 | 581.4 | 1129.65 |  12.84x |
  | maml+remat | 35.23 | 41.93 | 55.31 |   77.66 |   2.20x |
  | imaml      | 48.13 | 48.13 | 48.13 |   48.13 |   1.00x |

(iMAML with lam=2 and 5 CG steps; its constant is the CG and Hessian-vector-product buffers.)

Run:
  python benchmarks/bench_memory_implicit.py                   # Omniglot 20w1s Conv-4
  python benchmarks/bench_memory_implicit.py --steps 5 20 --json mem.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _workloads  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import metajax  # noqa: E402

VARIANTS = {
    "maml": lambda model, w: metajax.maml(model, inner_lr=w.inner_lr, steps=w.steps),
    "maml+remat": lambda model, w: metajax.maml(model, inner_lr=w.inner_lr, steps=w.steps,
                                                remat=True),
    "imaml": lambda model, w: metajax.imaml(model, lam=2.0, inner_lr=w.inner_lr, steps=w.steps,
                                            cg_steps=5),
}


def task_grad_memory(workload, variant: str, steps: int) -> dict:
  workload = dataclasses.replace(workload, steps=steps)
  learner = VARIANTS[variant](_workloads.make_model(workload), workload)
  task = jax.tree.map(lambda x: x[0], _workloads.make_tasks(workload))
  start = time.perf_counter()
  lowered = jax.jit(learner.task_grad).lower(learner.init(), task, jax.random.key(0),
                                             jnp.zeros([], jnp.int32))
  memory = lowered.compile().memory_analysis()
  return {"variant": variant, "steps": steps, "temp_mib": memory.temp_size_in_bytes / 2**20,
          "argument_mib": memory.argument_size_in_bytes / 2**20,
          "compile_s": time.perf_counter() - start}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workload", default="omniglot_maml_20w1s",
                      choices=[k for k, w in _workloads.WORKLOADS.items() if w.model == "conv4"
                               and w.algorithm == "maml"])
  parser.add_argument("--steps", type=int, nargs="*", default=[5, 20, 50, 100])
  parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
  parser.add_argument("--json", help="write the rows to this file")
  args = parser.parse_args()
  workload = _workloads.WORKLOADS[args.workload]
  print(f"# {workload.title} -> one task, inner steps varied, backend={jax.default_backend()}")
  print("| variant | inner steps | XLA temp MiB | arguments MiB | compile s |")
  print("|---|---|---|---|---|")
  rows = []
  for variant in args.variants:
    for steps in args.steps:
      row = task_grad_memory(workload, variant, steps)
      rows.append(row)
      print(f"| {variant} | {steps} | {row['temp_mib']:.2f} | {row['argument_mib']:.2f} | "
            f"{row['compile_s']:.1f} |", flush=True)
  for variant in args.variants:
    temps = [r["temp_mib"] for r in rows if r["variant"] == variant]
    print(f"{variant}: temp at {args.steps[-1]} steps / at {args.steps[0]} steps = "
          f"{temps[-1] / temps[0]:.2f}x")
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
  main()
