"""Compile time of a first and a second ``metajax train`` run: the persistent compilation cache.

``metajax train`` turns on JAX's persistent compilation cache in ``$METAJAX_CACHE_DIR/jax``
(``metajax/train/_compile_cache.py``). This script runs the same training command twice, each in a
fresh process, with a fresh, empty cache folder, and reports what JAX reports through
``jax.monitoring``:

* ``compile s``: XLA compilation (``/jax/core/compile/backend_compile_duration``, summed over every
  program; on a cache hit it is the time to read the executable back),
* ``compile CPU s``: the CPU time (all threads of the process) spent in those compilations or
  cache reads (``jax._src.compiler.compile_or_get_cached``, wrapped here),
* ``trace+lower s``: tracing to a jaxpr and lowering to StableHLO (not cached: paid every run),
* ``programs``, ``cache hits``, and the wall time and CPU time (user + system, all threads) of
  the process, data loading and the training steps included. On a loaded machine the CPU time
  is the number to compare: the wall times stretch with the load.

With ``--no-cache``, the second run sets ``METAJAX_COMPILATION_CACHE=0`` (both runs compile).

Usage::

  python benchmarks/bench_compile_cache.py configs/maml_omniglot.py:5w1s meta_steps=2 \\
      eval_every=2 eval_episodes=4 test_episodes=4 adaptation_steps=0

Data are read from ``$METAJAX_DATA_DIR``; the converted arrays of the real cache folder are linked
into the temporary one, so only the compilation cache is cold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

_RUN = textwrap.dedent("""
  import atexit, collections, json, sys, time
  from jax import monitoring
  from jax._src import compiler
  compile_or_get_cached = compiler.compile_or_get_cached
  def timed(*args, **kwargs):  # CPU time of every thread: stays put when the machine is loaded
    began = time.process_time()
    try:
      return compile_or_get_cached(*args, **kwargs)
    finally:
      totals["compile_cpu_s"] += time.process_time() - began
  compiler.compile_or_get_cached = timed  # looked up by name in jax._src.interpreters.pxla
  totals = collections.Counter()
  slowest = {}
  def duration(event, secs, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      totals["compile_s"] += secs
      totals["programs"] += 1
      name = kwargs.get("fun_name", "?")
      slowest[name] = max(slowest.get(name, 0.0), secs)
    elif event in ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration"):
      totals["trace_lower_s"] += secs
  def event(name, **kwargs):
    if name == "/jax/compilation_cache/cache_hits":
      totals["cache_hits"] += 1
  monitoring.register_event_duration_secs_listener(duration)
  monitoring.register_event_listener(event)
  def report():
    top = sorted(slowest.items(), key=lambda item: -item[1])
    print("COMPILE " + json.dumps({**totals, "slowest": top}), file=sys.stderr, flush=True)
  atexit.register(report)
  from metajax.cli import main
  sys.exit(main(sys.argv[1:]))
""")


def _real_cache() -> Path:
  return Path(os.environ.get("METAJAX_CACHE_DIR") or Path.home() / ".cache" / "metajax")


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _run(command: list[str], env: dict) -> dict:
  began, cpu = time.perf_counter(), _cpu_seconds()
  proc = subprocess.run([sys.executable, "-c", _RUN, *command], env=env, capture_output=True,
                        text=True, check=False)
  wall, cpu = time.perf_counter() - began, _cpu_seconds() - cpu
  if proc.returncode != 0:
    raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  line = [x for x in proc.stderr.splitlines() if x.startswith("COMPILE ")][-1]
  return {**json.loads(line[len("COMPILE "):]), "wall_s": wall, "cpu_s": cpu}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("config", help="CONFIG.py[:ARG] for metajax train")
  parser.add_argument("overrides", nargs="*", help="key=value overrides")
  parser.add_argument("--no-cache", action="store_true",
                      help="second run with METAJAX_COMPILATION_CACHE=0")
  parser.add_argument("--json", help="also write both runs, every program's compile time "
                                     "included, to this JSON file")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    cache = Path(tmp) / "cache"
    cache.mkdir()
    for entry in _real_cache().iterdir():  # converted arrays: warm; compilation cache: cold
      if entry.name not in ("jax", "jax_compile_tests"):
        (cache / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    env.update(METAJAX_CACHE_DIR=str(cache), METAJAX_COMPILATION_CACHE="1")
    rows = []
    for run in ("first", "second"):
      if run == "second" and args.no_cache:
        env["METAJAX_COMPILATION_CACHE"] = "0"
      command = ["train", args.config, *args.overrides, f"run_dir={Path(tmp) / run}",
                 "--no-progress"]
      rows.append((run, _run(command, env)))
    entries = list((cache / "jax").glob("*-cache")) if (cache / "jax").is_dir() else []
    size = sum(p.stat().st_size for p in entries) / 2**20
  load = Path("/proc/loadavg").read_text().strip()
  if args.json:
    Path(args.json).write_text(json.dumps({"load_average": load, "entries": len(entries),
                                           "runs": dict(rows)}, indent=2))
  print(f"load average: {load}")
  print(f"cache folder after both runs: {len(entries)} entries, {size:.1f} MiB")
  print("| run | compile s | compile CPU s | trace+lower s | programs | cache hits | wall s | "
        "CPU s | slowest compile |")
  print("|---|---|---|---|---|---|---|---|---|")
  for run, r in rows:
    name, secs = (r["slowest"] or [("-", 0.0)])[0]
    print(f"| {run} | {r.get('compile_s', 0):.2f} | {r.get('compile_cpu_s', 0):.2f} | "
          f"{r.get('trace_lower_s', 0):.2f} | "
          f"{r.get('programs', 0)} | {r.get('cache_hits', 0)} | {r['wall_s']:.1f} | "
          f"{r['cpu_s']:.1f} | "
          f"{name} {secs:.2f} s |")


if __name__ == "__main__":
  main()
