"""Program memory of second-order MAML on Conv-4 against inner steps, with and without remat.

The numbers come from XLA's own accounting of the compiled meta-step
(``jax.jit(update).lower(...).compile().memory_analysis()``): ``temp`` is the scratch memory the
program needs (activations kept for the backward pass live here), ``argument`` the inputs (state
and task batch). They describe the program, not the process, and need no run.

Run:
  python benchmarks/bench_memory.py                  # Omniglot 5w1s, B=32, steps 1 5 10 20
  python benchmarks/bench_memory.py --steps 1 5 --batching vmap --json mem.json
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

import metajax  # noqa: E402
from metajax.core.meta_step import meta_update  # noqa: E402


def program_memory(workload, steps: int, remat: bool, batching: str) -> dict:
  workload = dataclasses.replace(workload, steps=steps)
  model = _workloads.make_model(workload)
  learner = metajax.maml(model, inner_lr=workload.inner_lr, steps=steps, remat=remat)
  optimizer = _workloads.outer_optimizer()
  state = metajax.init_meta_state(learner, optimizer)
  tasks = _workloads.make_tasks(workload)
  start = time.perf_counter()
  update = jax.jit(meta_update(learner, optimizer, batching=batching), donate_argnums=(0,))
  memory = update.lower(state, tasks, jax.random.key(0)).compile().memory_analysis()
  return {"steps": steps, "remat": remat, "batching": batching,
          "temp_mib": memory.temp_size_in_bytes / 2**20,
          "argument_mib": memory.argument_size_in_bytes / 2**20,
          "output_mib": memory.output_size_in_bytes / 2**20,
          "compile_s": time.perf_counter() - start}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workload", default="omniglot_maml_5w1s",
                      choices=[k for k, w in _workloads.WORKLOADS.items() if w.model == "conv4"
                               and w.algorithm == "maml"])
  parser.add_argument("--steps", type=int, nargs="*", default=[1, 5, 10, 20])
  parser.add_argument("--batching", default="map", help="task batching of the meta-step")
  parser.add_argument("--json", help="write the rows to this file")
  args = parser.parse_args()
  workload = _workloads.WORKLOADS[args.workload]
  print(f"# {workload.title} (inner steps varied), batching={args.batching}, "
        f"conv={'matmul' if jax.default_backend() == 'cpu' else 'xla'}")
  print("| inner steps | remat | XLA temp MiB | arguments MiB | compile s |")
  print("|---|---|---|---|---|")
  rows = []
  for steps in args.steps:
    for remat in (False, True):
      row = program_memory(workload, steps, remat, args.batching)
      rows.append(row)
      print(f"| {steps} | {remat} | {row['temp_mib']:.1f} | {row['argument_mib']:.1f} | "
            f"{row['compile_s']:.1f} |", flush=True)
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
  main()
