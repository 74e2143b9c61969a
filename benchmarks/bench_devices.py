"""Meta-steps/s of one meta-step sharded over 1, 2, 4 devices and over 2 processes.

The workload is Omniglot MAML 5-way 1-shot, meta-batch 32, 1 inner step, Conv-4 64 (the
``omniglot_maml_5w1s`` row of ``run_all.py``; fixed random inputs of Omniglot's shape). Each
layout runs in a fresh subprocess: on CPU its devices are host-platform devices
(``--xla_force_host_platform_device_count``), on GPU/TPU the first N real devices. The
multi-process row starts ``--processes`` processes on localhost joined by ``jax.distributed``
(127.0.0.1 coordinator), each with ``--devices-per-process`` devices. Scaling efficiency is
``rate(N devices) / (N * rate(1 device))``.

On CPU the host-platform "devices" share the same cores (XLA already spreads one device's work
over them), so these rows measure what sharding costs, not a speed-up; a speed-up needs devices
that are separate hardware (GPUs, TPU cores, hosts).

Run:
  python benchmarks/bench_devices.py                          # 1, 2, 4 devices + 2 processes
  python benchmarks/bench_devices.py --devices 1,8 --processes 0   # a GPU machine, no processes
  python benchmarks/bench_devices.py --meta-batch 4 --filters 8 --repeats 1 --target-s 0.5
      # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(args: argparse.Namespace) -> None:
  """One layout, in this process (started by :func:`main`)."""
  import jax

  if args.process_count > 1:
    jax.distributed.initialize(f"127.0.0.1:{args.port}", args.process_count, args.process_id)
  import dataclasses

  import _workloads
  from run_all import _timed_rates

  import metajax
  from metajax.train import distributed

  workload = dataclasses.replace(_workloads.WORKLOADS["omniglot_maml_5w1s"],
                                 meta_batch=args.meta_batch, filters=args.filters)
  layout = distributed.device_layout(args.devices * args.process_count)
  learner = _workloads.make_learner(workload, _workloads.make_model(workload))
  optimizer = _workloads.outer_optimizer()
  step = distributed.meta_step(layout, learner, optimizer, batching=args.batching)
  state = [distributed.replicate(layout, metajax.init_meta_state(learner, optimizer))]
  tasks = distributed.shard_batch(layout, _workloads.make_tasks(workload))
  key = jax.random.key(2)
  start = time.perf_counter()
  state[0], metrics = step(state[0], tasks, key)
  jax.block_until_ready(metrics)
  first_s = time.perf_counter() - start

  def call():
    state[0], metrics = step(state[0], tasks, key)
    return metrics["loss"]

  rate, n_calls = _timed_rates(call, jax.block_until_ready, args.repeats, args.target_s)
  if layout.primary:
    print("RESULT " + json.dumps({
        "devices": layout.shards, "processes": layout.process_count, "rate": rate,
        "calls": n_calls, "first_call_s": first_s, "batching": getattr(step, "batching", None),
        "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind}),
        flush=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(args: argparse.Namespace, devices: int, processes: int) -> dict:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH",
                                                                                 "")])}
  if args.cpu:
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
  common = [sys.executable, str(Path(__file__).resolve()), "--worker", "--meta-batch",
            str(args.meta_batch), "--filters", str(args.filters), "--repeats", str(args.repeats),
            "--target-s", str(args.target_s), "--batching", args.batching, "--devices",
            str(devices), "--process-count", str(processes), "--port", str(_free_port())]
  children = [subprocess.Popen(common + ["--process-id", str(i)], env=env, cwd=HERE.parent,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(processes)]
  outputs = [child.communicate(timeout=args.timeout) for child in children]
  if any(child.returncode for child in children):
    raise RuntimeError(f"layout of {devices} device(s) x {processes} process(es) failed:\n"
                       + "\n".join(err[-2000:] for _, err in outputs))
  line = [x for x in outputs[0][0].splitlines() if x.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,4", help="device counts of one process (1,2,4)")
  parser.add_argument("--processes", type=int, default=2,
                      help="processes of the multi-process row; 0 skips it (2)")
  parser.add_argument("--devices-per-process", type=int, default=1,
                      help="devices of each process in the multi-process row (1)")
  parser.add_argument("--meta-batch", type=int, default=32, help="tasks per meta-step (32)")
  parser.add_argument("--filters", type=int, default=64, help="Conv-4 width (64)")
  parser.add_argument("--batching", default="auto", help="per-device task batching (auto)")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs per layout (5)")
  parser.add_argument("--target-s", type=float, default=3.0, help="seconds per timed run (3)")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds per layout")
  parser.add_argument("--cpu", action=argparse.BooleanOptionalAction, default=None,
                      help="host-platform CPU devices (default: when no accelerator is found)")
  parser.add_argument("--json", help="also write the rows to this JSON file")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--process-count", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    args.devices = int(args.devices)
    worker(args)
    return
  if args.cpu is None:
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                           capture_output=True, text=True, check=True)
    args.cpu = probe.stdout.strip() == "cpu"
  layouts = [(int(n), 1) for n in args.devices.split(",")]
  if args.processes > 1:
    layouts.append((args.devices_per_process, args.processes))
  loadavg = Path("/proc/loadavg")
  load = " ".join(loadavg.read_text().split()[:3]) if loadavg.exists() else "?"
  print(f"Omniglot MAML 5w1s, meta-batch {args.meta_batch}, Conv-4 {args.filters}; "
        f"{'host-platform CPU devices' if args.cpu else 'accelerator devices'}; load average "
        f"{load}")
  rows, base = [], None
  for devices, processes in layouts:
    row = _launch(args, devices, processes)
    base = row["rate"] if base is None and row["devices"] == 1 else base
    row["efficiency"] = None if base is None else row["rate"] / (row["devices"] * base)
    rows.append(row)
    efficiency = "-" if row["efficiency"] is None else f"{100 * row['efficiency']:.0f}%"
    print(f"  {row['devices']} device(s) in {row['processes']} process(es): "
          f"{row['rate']:.2f} meta-steps/s, scaling efficiency {efficiency} "
          f"(batching {row['batching']}, first call {row['first_call_s']:.1f} s, "
          f"{row['device_kind']})", flush=True)
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
  main()
