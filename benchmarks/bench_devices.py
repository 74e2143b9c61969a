"""Meta-steps/s of Omniglot MAML 5w1s on 1, 2 and 4 devices and on 2 processes.

What is timed is the trainer's own loop (``metajax train``): the task batch of each step is
sampled by :func:`metajax.train.distributed.batches` (each process samples only the episodes
its devices hold) and fed to :func:`metajax.train.distributed.meta_step`, the meta-step sharded
over the ``"tasks"`` axis of the device mesh. The workload is the network and hyperparameters of
``configs/maml_omniglot.py:5w1s`` (Conv-4 64 with stride-2 convolutions and BatchNorm,
second-order MAML with 1 inner step, Adam; meta-batch 32 tasks, so the global batch is the same
in every layout), on the Omniglot training split (``--synthetic``: random images of Omniglot's
shape, for a machine without the data). Every layout runs in fresh processes; the first
``--warmup`` steps (the first one compiles) are not timed, then ``--repeats`` runs of ``--steps``
steps each are, and the median rate is reported. Every process runs the same number of steps (the
steps are collectives), and process 0 reports. Compiled programs go to JAX's persistent cache
(``--compile-cache``), so a rerun skips the compiles, which on CPU take much longer for the
sharded step than for the one-device step (about 7x for a Conv-4 MAML step on 2 host devices on
a loaded 2-core machine, 2026-11-29).

Scaling efficiency is ``rate(D devices) / (D * rate(1 device))``: 100% is a D-fold speed-up of the
same global batch (strong scaling). The multi-process row starts ``--processes`` processes on
this machine joined by ``jax.distributed`` (a 127.0.0.1 coordinator), each with its share of the
devices (``--devices-per-process``, default: the largest device count divided by the number of
processes, so 2 processes x 2 devices next to the 4-device row).

**Read the CPU numbers for what they are.** On a CPU-only machine the devices are host-platform
devices (``--xla_force_host_platform_device_count``) that share the same cores: on a 2-core
machine, 4 "devices" (or 2 processes) still compute on the same two cores that one device already
keeps busy. Their efficiency therefore measures the overhead of sharding (the collectives, the
per-device programs, Gloo between processes), not a speed-up; expect at most 100%/D. The same
script on a multi-GPU (or TPU) machine measures real scaling: there the devices are the GPUs,
the 1/2/4 rows take the first 1/2/4 GPUs, and each process of the multi-process row gets its
own GPUs (``CUDA_VISIBLE_DEVICES``).

Run (from the repository root; ``METAJAX_DATA_DIR`` holds Omniglot):
  python benchmarks/bench_devices.py --markdown --json devices.json     # 1, 2, 4 + 2 processes
  python benchmarks/bench_devices.py --quick        # ~3 min on an idle 2-core CPU, compiles cached
  python benchmarks/bench_devices.py --devices 1,2,4,8 --processes 2    # an 8-GPU machine
  python benchmarks/bench_devices.py --meta-batch 4 --filters 4 --steps 2 --repeats 1 \\
      --warmup 1 --devices 1,2 --synthetic                              # a smoke test

References:
  Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
  ICML 2017 (the workload); JAX, "Multi-process environments" (``jax.distributed``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = f"{HERE.parent / 'configs' / 'maml_omniglot.py'}:5w1s"


def _config(args: argparse.Namespace):
  from metajax.train import load_config

  return load_config(CONFIG, [f"meta_batch={args.meta_batch}",
                              f"model_kwargs.filters={args.filters}"])


def _dataset(args: argparse.Namespace, config):
  from metajax.train import registry

  if not args.synthetic:
    return registry.load_split(config, config.train_split)
  import numpy as np

  from metajax.data import ClassDataset

  height, width, channels = registry.image_shape(config)
  images = np.random.default_rng(0).integers(0, 256, (200, 20, height, width, channels),
                                             dtype=np.uint8)
  return ClassDataset(images=images, class_names=tuple(f"c{i}" for i in range(200)),
                      name="synthetic omniglot-shaped")


def worker(args: argparse.Namespace) -> None:
  """One layout, in this process (started by :func:`main`): prints ``RESULT {json}``."""
  from metajax.train import distributed

  if args.process_count > 1:  # before anything computes with JAX
    distributed.initialize(coordinator=f"127.0.0.1:{args.port}",
                           num_processes=args.process_count, process_id=args.process_id)
  import jax

  import metajax
  from metajax.train import registry

  config = _config(args)
  layout = distributed.device_layout(args.devices * args.process_count)
  distributed.check_batch(layout, config.meta_batch)
  root = jax.random.key(config.seed)
  learner = registry.build_learner(config, jax.random.fold_in(root, 0))
  optimizer = registry.build_optimizer(config)
  state = distributed.replicate(layout, metajax.init_meta_state(learner, optimizer))
  sampler = registry.train_sampler(config, _dataset(args, config))
  step_fn = distributed.meta_step(layout, learner, optimizer, batching=config.batching,
                                 check_finite="skip")  # as the trainer's
  batches = distributed.batches(layout, sampler, jax.random.fold_in(root, 1))
  step_key = jax.random.fold_in(root, 2)
  done = 0

  def run(steps: int) -> float:
    """Seconds for ``steps`` meta-steps, sampling included, until their results exist."""
    nonlocal state, done
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step_fn(state, next(batches), jax.random.fold_in(step_key, done))
      done += 1
    jax.block_until_ready(metrics)  # computed with the state by the same program
    return time.perf_counter() - start

  first_s = run(1)  # compiles
  warmup_s = run(args.warmup - 1) if args.warmup > 1 else 0.0
  rates = [args.steps / run(args.steps) for _ in range(args.repeats)]
  if layout.primary:
    print("RESULT " + json.dumps({
        "devices": layout.shards, "processes": layout.process_count,
        "steps_per_s": statistics.median(rates), "rates": rates,
        "timed_steps": args.steps * args.repeats, "first_step_s": first_s,
        "warmup_s": first_s + warmup_s, "batching": getattr(step_fn, "batching", None),
        "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind}),
        flush=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(args: argparse.Namespace, devices: int, processes: int) -> dict:
  """Runs one layout (``processes`` processes of ``devices`` devices each) and returns its row."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)}
  # A rerun loads the compiled steps (compiling is never timed, but takes minutes per layout).
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(args.compile_cache))
  command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--meta-batch",
             str(args.meta_batch), "--filters", str(args.filters), "--steps", str(args.steps),
             "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--devices",
             str(devices), "--process-count", str(processes), "--port", str(_free_port()),
             *(["--synthetic"] if args.synthetic else [])]
  children = []
  for i in range(processes):
    child_env = dict(env)
    if args.cpu:
      child_env["JAX_PLATFORMS"] = "cpu"
      flags = [f for f in env.get("XLA_FLAGS", "").split()
               if not f.startswith("--xla_force_host_platform_device_count")]
      child_env["XLA_FLAGS"] = " ".join(
          [*flags, f"--xla_force_host_platform_device_count={devices}"])
    elif processes > 1:  # each process drives its own GPUs
      visible = env.get("CUDA_VISIBLE_DEVICES")
      ids = visible.split(",") if visible else [str(g) for g in range(devices * processes)]
      child_env["CUDA_VISIBLE_DEVICES"] = ",".join(ids[i * devices:(i + 1) * devices])
    children.append(subprocess.Popen(command + ["--process-id", str(i)], env=child_env,
                                     cwd=HERE.parent, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
  try:
    outputs = [child.communicate(timeout=args.timeout) for child in children]
  finally:
    for child in children:
      if child.poll() is None:
        child.kill()
  if any(child.returncode for child in children):
    raise RuntimeError(f"the layout of {processes} process(es) x {devices} device(s) failed:\n"
                       + "\n".join(err[-2000:] for _, err in outputs))
  line = [x for x in outputs[0][0].splitlines() if x.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def _load() -> str:
  path = Path("/proc/loadavg")
  return " ".join(path.read_text().split()[:3]) if path.exists() else "unknown"


def markdown(report: dict) -> str:
  """The rows of ``report`` as a Markdown table."""
  lines = [f"{report['workload']}; {report['hardware']}; load average {report['load_before']} "
           f"before, {report['load_after']} after.", "",
           "| devices | processes | meta-steps/s | scaling efficiency | first step (s) |",
           "|---:|---:|---:|---:|---:|"]
  for row in report["rows"]:
    efficiency = "-" if row["efficiency"] is None else f"{100 * row['efficiency']:.0f}%"
    lines.append(f"| {row['devices']} | {row['processes']} | {row['steps_per_s']:.2f} | "
                 f"{efficiency} | {row['first_step_s']:.1f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      epilog="On a 2-core CPU the host-platform devices share the same two cores: the scaling "
             "efficiency there measures the cost of sharding, not a speed-up.")
  parser.add_argument("--devices", default="1,2,4",
                      help="device counts of the one-process rows, comma-separated (1,2,4)")
  parser.add_argument("--processes", type=int, default=2,
                      help="processes of the multi-process row; 0 or 1 skips it (2)")
  parser.add_argument("--devices-per-process", type=int,
                      help="devices of each process in the multi-process row (default: the "
                           "largest of --devices divided by --processes, at least 1)")
  parser.add_argument("--meta-batch", type=int, default=32, help="tasks per meta-step (32)")
  parser.add_argument("--filters", type=int, default=64, help="Conv-4 width (64, the config's)")
  parser.add_argument("--warmup", type=int, default=3,
                      help="untimed steps first, the first of which compiles (3)")
  parser.add_argument("--steps", type=int, default=20, help="meta-steps per timed run (20)")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs per layout (5)")
  parser.add_argument("--quick", action="store_true",
                      help="--warmup 2 --steps 6 --repeats 1: within about 3 minutes on an idle "
                           "2-core CPU once the compiled steps are cached (a first run compiles "
                           "every layout too)")
  parser.add_argument("--synthetic", action="store_true",
                      help="random images of Omniglot's shape instead of the Omniglot data")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds per layout (1800)")
  parser.add_argument("--compile-cache", type=Path,
                      default=Path(os.environ.get("METAJAX_CACHE_DIR", Path.home() / ".cache" /
                                                  "metajax")) / "jax_bench_devices",
                      help="JAX's persistent compilation cache for the layouts, so that a rerun "
                           "skips compiling (default: $METAJAX_CACHE_DIR/jax_bench_devices; "
                           "$JAX_COMPILATION_CACHE_DIR wins when set)")
  parser.add_argument("--cpu", action=argparse.BooleanOptionalAction, default=None,
                      help="host-platform CPU devices (default: when JAX finds no accelerator)")
  parser.add_argument("--json", metavar="PATH", help="also write the report to this JSON file")
  parser.add_argument("--markdown", action="store_true",
                      help="also print the rows as a Markdown table")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--process-count", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.quick:
    args.warmup, args.steps, args.repeats = 2, 6, 1
  for name in ("warmup", "steps", "repeats", "meta_batch", "filters"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
  if args.worker:
    args.devices = int(args.devices)
    worker(args)
    return
  try:
    counts = [int(n) for n in args.devices.split(",") if n.strip()]
  except ValueError:
    parser.error(f"--devices takes comma-separated device counts, e.g. 1,2,4; got "
                 f"{args.devices!r}")
  layouts = [(n, 1) for n in counts]
  if args.processes > 1:
    per_process = args.devices_per_process or max(1, max(counts, default=1) // args.processes)
    layouts.append((per_process, args.processes))
  for devices, processes in layouts:
    if devices < 1 or args.meta_batch % (devices * processes):
      parser.error(f"--meta-batch {args.meta_batch} does not split over {devices * processes} "
                   f"devices ({processes} process(es) x {devices}); use device counts that "
                   f"divide it")
  if args.cpu is None:
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                           capture_output=True, text=True, check=True)
    args.cpu = probe.stdout.strip() == "cpu"
  hardware = (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
              "host-platform devices sharing them" if args.cpu else "accelerator devices")
  report = {"workload": f"Omniglot MAML 5w1s ({CONFIG.rsplit('/', 1)[-1]}), meta-batch "
                        f"{args.meta_batch}, Conv-4 {args.filters}"
                        + (", synthetic images" if args.synthetic else ""),
            "hardware": hardware, "warmup": args.warmup, "steps": args.steps,
            "repeats": args.repeats, "load_before": _load(), "rows": []}
  print(f"{report['workload']}; {hardware}; load average {report['load_before']}", flush=True)
  base = None
  for devices, processes in layouts:
    row = _launch(args, devices, processes)
    if base is None and row["devices"] == 1:
      base = row["steps_per_s"]
    row["efficiency"] = None if base is None else row["steps_per_s"] / (row["devices"] * base)
    report["rows"].append(row)
    efficiency = "-" if row["efficiency"] is None else f"{100 * row['efficiency']:.0f}%"
    print(f"  {row['devices']} device(s) in {row['processes']} process(es): "
          f"{row['steps_per_s']:.2f} meta-steps/s, scaling efficiency {efficiency} "
          f"(first step {row['first_step_s']:.1f} s, batching {row['batching']}, "
          f"{row['device_kind']})", flush=True)
  report["load_after"] = _load()
  print(f"scaling efficiency = steps/s on D devices / (D x steps/s on 1 device); load average "
        f"after: {report['load_after']}")
  if args.cpu:
    print("host-platform devices share this machine's cores: the efficiency measures the "
          "overhead of sharding, not a speed-up")
  if args.markdown:
    print("\n" + markdown(report))
  if args.json:
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
