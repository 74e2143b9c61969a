"""The metajax benchmark suite, side by side with PyTorch ``torch.func``, in one command.

Every (workload, implementation) pair runs in its own subprocess, one after another, so peak
memory is that pair's alone and all pairs share the same machine conditions. Throughput is the
median meta-steps/s of several timed runs after a warm-up call; the ratio column is metajax over
the fastest PyTorch variant of the same workload.

metajax columns: ``compile s`` is ``jax.jit(...).lower(...).compile()`` wall time (tracing
included); ``XLA temp MiB`` is ``compiled.memory_analysis().temp_size_in_bytes`` (scratch memory
of the program, arguments and outputs excluded). ``peak RSS MiB`` (all implementations) is the
subprocess's ``resource.getrusage`` peak resident set, libraries included.

Run:
  python benchmarks/run_all.py                        # everything; JSON to benchmarks/results/
  python benchmarks/run_all.py --quick                # fewer, shorter timed runs
  python benchmarks/run_all.py --workloads omniglot_maml_5w1s sinusoid_maml_1
  python benchmarks/run_all.py --impls metajax metajax:unrolled torch:loop
  python benchmarks/run_all.py --device cuda --bf16 --markdown results/gpu.md   # on a GPU

``--device cuda`` runs both frameworks on the GPU (JAX's CUDA backend, PyTorch's ``cuda``);
``--device cpu`` pins both to the CPU even where a GPU exists. ``--bf16`` computes matmuls and
convolutions in bfloat16 on both sides (JAX: ``jax.default_matmul_precision("bfloat16")``;
PyTorch: ``torch.autocast(dtype=torch.bfloat16)``), with float32 weights and optimizer state.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_IMPLS = ("metajax", "torch:loop", "torch:vmap")


def cpu_name() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def machine_id() -> str:
  return os.environ.get("METAJAX_BENCH_MACHINE", f"{platform.node()}-{os.cpu_count()}cpu")


def _timed_rates(call, sync, repeats: int, target_s: float) -> tuple[float, int]:
  """Median calls/s over ``repeats`` runs; calls per run sized from one timed call."""
  start = time.perf_counter()
  sync(call())
  one = time.perf_counter() - start
  n_calls = max(1, min(1000, int(target_s / max(one, 1e-6))))
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = None
    for _ in range(n_calls):
      out = call()
    sync(out)
    rates.append(n_calls / (time.perf_counter() - start))
  return statistics.median(rates), n_calls


def run_metajax(workload, variant: str, repeats: int, target_s: float, bf16: bool = False
                ) -> dict:
  import _workloads
  import jax

  import metajax
  from metajax.core.meta_step import meta_update, select_batching

  conv, _, batching = variant.rpartition("/") if "/" in variant else ("auto", "", variant)
  tasks = _workloads.make_tasks(workload)
  model = _workloads.make_model(workload, conv=conv)
  learner = _workloads.make_learner(workload, model)
  optimizer = _workloads.outer_optimizer()
  state = metajax.init_meta_state(learner, optimizer)
  key = jax.random.key(2)
  learner.check_task(tasks)
  start = time.perf_counter()
  mode = select_batching(learner, state.params, tasks) if batching == "auto" else batching
  update = meta_update(learner, optimizer, batching=mode,
                       chunk_size=4 if mode == "chunked" else None)
  precision = jax.default_matmul_precision("bfloat16" if bf16 else None)
  with precision:   # read at trace time, so it covers the compiled program
    compiled = jax.jit(update, donate_argnums=(0,)).lower(state, tasks, key).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  holder = [state]
  first = {}

  def call():
    holder[0], metrics = compiled(holder[0], tasks, key)
    first.setdefault("loss", metrics["loss"])
    return metrics["loss"]

  rate, n_calls = _timed_rates(call, jax.block_until_ready, repeats, target_s)
  return {"steps_per_s": rate, "calls_per_run": n_calls, "compile_s": compile_s,
          "batching": mode, "conv": conv if workload.model != "mlp" else None,
          "backend": jax.default_backend(),
          "xla_temp_mib": memory.temp_size_in_bytes / 2**20 if memory else None,
          "xla_argument_mib": memory.argument_size_in_bytes / 2**20 if memory else None,
          "first_loss": float(first["loss"])}


def run_torch(workload, variant: str, repeats: int, target_s: float, bf16: bool = False,
              device: str = "cpu") -> dict:
  import _workloads
  import jax
  import torch
  import torch_impl

  torch.set_num_threads(os.cpu_count() or 1)
  w = workload
  jax_model = _workloads.make_model(w, conv="xla")
  if w.model == "mlp":
    module = torch_impl.MLP([1, 40, 40, 1])
  elif w.model == "resnet12":
    module = torch_impl.ResNet12(None if w.algorithm == "protonet" else w.ways, w.input_shape,
                                 w.widths)
  else:
    module = torch_impl.Conv4(None if w.algorithm == "protonet" else w.ways, w.input_shape,
                              w.filters, w.pooling)
  module = module.to(device)
  params = torch_impl.params_from_metajax(module, jax.device_get(jax_model.params), device)
  tasks = torch_impl.to_torch_tasks(_workloads.make_tasks(w), images=w.model != "mlp",
                                    device=device)
  step = torch_impl.make_meta_step(
      module, params, tasks, algorithm=w.algorithm, inner_lr=w.inner_lr, steps=w.steps,
      loss="mse" if w.model == "mlp" else "cross_entropy", variant=variant,
      outer_lr=_workloads.OUTER_LR, bf16=bf16)
  first_loss = step.first_loss()
  sync = lambda out: torch_impl.synchronize(device)
  start = time.perf_counter()
  sync(step())
  warm_s = time.perf_counter() - start
  rate, n_calls = _timed_rates(step, sync, repeats, target_s)
  return {"steps_per_s": rate, "calls_per_run": n_calls, "warmup_s": warm_s,
          "first_loss": first_loss, "backend": device}


def worker(name: str, impl: str, repeats: int, target_s: float, bf16: bool = False,
           device: str = "cpu") -> None:
  import _workloads

  workload = _workloads.WORKLOADS[name]
  family, _, variant = impl.partition(":")
  rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  if family == "metajax":
    result = run_metajax(workload, variant or "auto", repeats, target_s, bf16)
  else:
    result = run_torch(workload, variant or "loop", repeats, target_s, bf16, device)
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  result.update(peak_rss_mib=rss / 1024, rss_growth_mib=(rss - rss_before) / 1024)
  print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
  import _workloads

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workloads", nargs="*", default=list(_workloads.WORKLOADS),
                      help=f"any of {list(_workloads.WORKLOADS)}")
  parser.add_argument("--impls", nargs="*", default=list(DEFAULT_IMPLS),
                      help="metajax[:BATCHING or :CONV/BATCHING], torch:loop, torch:vmap")
  parser.add_argument("--quick", action="store_true", help="3 timed runs of ~1 s each")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--json", help="output file (default benchmarks/results/<machine>.json)")
  parser.add_argument("--markdown", help="also write the table to this markdown file")
  parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                      help="where both frameworks run (auto: cuda when PyTorch sees a GPU)")
  parser.add_argument("--bf16", action="store_true",
                      help="bfloat16 matmuls/convolutions on both sides (float32 weights)")
  parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
  parser.add_argument("--target-s", type=float, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  repeats = args.repeats or (3 if args.quick else 7)
  target_s = args.target_s or (1.0 if args.quick else 3.0)
  device = args.device
  if device == "auto":
    device = _auto_device()
  if args.worker:
    worker(*args.worker, repeats, target_s, args.bf16, device)
    return
  unknown = [w for w in args.workloads if w not in _workloads.WORKLOADS]
  if unknown:
    parser.error(f"unknown workloads {unknown}; choose from {list(_workloads.WORKLOADS)}")
  load = os.getloadavg()
  lines = []

  def emit(line: str) -> None:
    print(line, flush=True)
    lines.append(line)

  emit(f"# {datetime.date.today()} {cpu_name()}, {os.cpu_count()} cores, "
       f"load average {load[0]:.1f} at start; device {device}" + (", bf16" if args.bf16 else ""))
  emit("| workload | impl | meta-steps/s | compile s | XLA temp MiB | peak RSS MiB | "
       "metajax / best PyTorch |")
  emit("|---|---|---|---|---|---|---|")
  rows = {}
  out = Path(args.json) if args.json else HERE / "results" / f"{machine_id()}.json"
  meta = {"date": str(datetime.date.today()), "cpu": cpu_name(), "cores": os.cpu_count(),
          "load_average_at_start": load, "command": " ".join(sys.argv), "repeats": repeats,
          "target_s_per_run": target_s, "device": device, "bf16": args.bf16}
  env = dict(os.environ)
  if device == "cpu":
    env["JAX_PLATFORMS"] = "cpu"     # the JAX side on the CPU even where a GPU exists
    env["CUDA_VISIBLE_DEVICES"] = ""
  flags = ["--device", device] + (["--bf16"] if args.bf16 else [])
  for name in args.workloads:
    results = {}
    for impl in args.impls:
      if impl.startswith("torch") and _workloads.WORKLOADS[name].algorithm == "protonet" \
          and impl.endswith("vmap"):
        continue  # one episode per step: the loop variant is the whole computation.
      cmd = [sys.executable, __file__, "--worker", name, impl, "--repeats", str(repeats),
             "--target-s", str(target_s), *flags]
      proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
      found = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
      if proc.returncode or not found:
        results[impl] = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        emit(f"| {name} | {impl} | failed: {results[impl]['error']} | | | | |")
        continue
      results[impl] = json.loads(found[-1][len("RESULT "):])
    torch_rates = [r["steps_per_s"] for k, r in results.items()
                   if k.startswith("torch") and "steps_per_s" in r]
    best_torch = max(torch_rates) if torch_rates else None
    for impl, r in results.items():
      if "steps_per_s" not in r:
        continue
      ratio = ""
      if impl.startswith("metajax") and best_torch:
        r["ratio_to_best_torch"] = r["steps_per_s"] / best_torch
        ratio = f"{r['ratio_to_best_torch']:.2f}x"
      label = impl
      if impl.startswith("metajax"):
        label = f"{impl} ({r['batching']}" + (f", {r['conv']} conv)" if r["conv"] else ")")
      compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else ""
      temp = f"{r['xla_temp_mib']:.1f}" if r.get("xla_temp_mib") is not None else ""
      emit(f"| {_workloads.WORKLOADS[name].title} | {label} | {r['steps_per_s']:.2f} | "
           f"{compile_s} | {temp} | {r['peak_rss_mib']:.0f} | {ratio} |")
    rows[name] = results
    # After every workload, so a suite stopped by a time limit keeps its rows and its table.
    _write(out, json.dumps({"machine": meta, "results": rows}, indent=2))
    if args.markdown:
      _write(Path(args.markdown), "\n".join(lines) + "\n")
  print(f"\nwrote {out}" + (f" and {args.markdown}" if args.markdown else ""))


def _auto_device() -> str:
  try:
    import torch
  except ImportError:
    return "cpu"
  return "cuda" if torch.cuda.is_available() else "cpu"


def _write(path: Path, text: str) -> None:
  """Writes ``text`` atomically (a killed suite leaves the previous version, never half a file)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


if __name__ == "__main__":
  main()
