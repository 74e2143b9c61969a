"""``metajax train`` turns on JAX's persistent compilation cache: a second run compiles nothing.

Two ``metajax train`` processes run the same tiny config with ``METAJAX_CACHE_DIR`` in a temporary
folder (the converted Omniglot arrays linked in, so only the compilation cache is cold). JAX
reports, through ``jax.monitoring``, every compile request that went through the persistent cache
and every hit: the first run must write the meta-step (``jit(update)``) and the rest to
``$METAJAX_CACHE_DIR/jax``, and the second must find every one of its programs there and write
nothing. The rules of ``enable_compilation_cache`` (a folder the user set wins, the opt-out, a bad
value) are checked in a fresh process each, since JAX opens its cache once per process.

The suite itself runs with ``METAJAX_COMPILATION_CACHE=0`` (``tests/conftest.py``), so no other
test writes to, or depends on, a cache in the user's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metajax.data import _paths
from metajax.train import Config

TINY = Config(
    name="tiny", algorithm="protonet", model="conv4",
    model_kwargs=dict(filters=4, pooling="stride"), dataset="omniglot", ways=3, shots=1,
    queries=1, meta_batch=2, meta_steps=2, eval_every=2, optimizer="sgd", learning_rate=0.02,
    eval_episodes=2, test_episodes=2, eval_batch=2, adaptation_steps=0, log_every=1, seed=3,
    checkpoint_every_minutes=None)

# Runs the CLI, counting what JAX reports about its persistent cache.
TRAIN = textwrap.dedent("""
  import collections, json, sys
  from jax import monitoring
  counts = collections.Counter()
  def event(name, **kwargs):
    counts[name.rsplit("/", 1)[-1]] += 1
  monitoring.register_event_listener(event)
  from metajax.cli import main
  code = main(sys.argv[1:])
  print("COUNTS " + json.dumps(counts))
  sys.exit(code)
""")

RULES = textwrap.dedent("""
  import json, os, sys
  from pathlib import Path
  import jax
  from metajax.train._compile_cache import enable_compilation_cache
  jax.jit(lambda x: x + 1)(1.0)  # JAX has compiled before the cache is turned on
  try:
    folder = enable_compilation_cache()
  except ValueError as error:
    folder = "ValueError: " + str(error)
  if len(sys.argv) > 1:  # a second call, with another cache folder
    os.environ["METAJAX_CACHE_DIR"] = sys.argv[1]
    folder = [str(folder), str(enable_compilation_cache())]
  jax.jit(lambda x: x * 3 - 1)(jax.numpy.ones(3))
  written = jax.config.jax_compilation_cache_dir
  written = written and len(list(Path(written).glob("jit__lambda-*-cache")))
  print("RESULT " + json.dumps({"written": written,
      "returned": folder if folder is None or isinstance(folder, list) else str(folder),
      "dir": jax.config.jax_compilation_cache_dir,
      "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
      "min_size": jax.config.jax_persistent_cache_min_entry_size_bytes}))
""")


def _env(cache: Path, **extra: str) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE", "METAJAX_COMP"))}
  return {**env, "JAX_PLATFORMS": "cpu", "METAJAX_CACHE_DIR": str(cache), **extra}


def _result(proc: subprocess.CompletedProcess, tag: str):
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith(tag + " ")][-1]
  return json.loads(line[len(tag) + 1:])


def _entries(folder: Path) -> dict[str, tuple[int, int]]:
  return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*-cache")}


def test_second_train_run_loads_every_program_from_the_cache(tmp_path, omniglot_root):
  cache = tmp_path / "cache"
  cache.mkdir()
  converted = _paths.cache_dir() / "omniglot"  # the converted arrays: warm (or filled here)
  converted.mkdir(exist_ok=True)
  (cache / "omniglot").symlink_to(converted, target_is_directory=True)
  config_file = tmp_path / "tiny.py"
  config_file.write_text("from metajax.train import Config\n"
                         f"def get_config():\n  return Config(**{json.loads(TINY.to_json())!r})\n")
  counts, entries = [], []
  for run in ("first", "second"):
    command = [sys.executable, "-c", TRAIN, "train", str(config_file),
               f"run_dir={tmp_path / run}", "--no-progress"]
    proc = subprocess.run(command, env=_env(cache), capture_output=True, text=True, timeout=600,
                          check=False)
    counts.append(_result(proc, "COUNTS"))
    entries.append(_entries(cache / "jax"))
  first, second = counts
  assert first["compile_requests_use_cache"] > 0, first
  assert any(name.startswith("jit_update-") for name in entries[0]), sorted(entries[0])
  assert len(entries[0]) >= first["compile_requests_use_cache"] - first.get("cache_hits", 0)
  assert second["compile_requests_use_cache"] == first["compile_requests_use_cache"], counts
  assert second.get("cache_hits", 0) == second["compile_requests_use_cache"], counts
  assert entries[1] == entries[0]  # nothing written or rewritten by the second run


def _rules(tmp_path: Path, *args: str, **env: str) -> dict:
  proc = subprocess.run([sys.executable, "-c", RULES, *args], env=_env(tmp_path / "cache", **env),
                        capture_output=True, text=True, timeout=300, check=False)
  return _result(proc, "RESULT")


def test_the_cache_goes_under_the_cache_dir_and_caches_every_program(tmp_path):
  out = _rules(tmp_path, str(tmp_path / "other"))
  folder = str(tmp_path / "cache" / "jax")
  # the first call chooses the folder for the process: JAX opens it once
  assert out == {"returned": [folder, folder], "dir": folder, "min_time": 0.0, "min_size": -1,
                 "written": 1}  # the program compiled after it was turned on


def test_a_cache_folder_the_user_set_wins(tmp_path):
  own = str(tmp_path / "own")
  out = _rules(tmp_path, JAX_COMPILATION_CACHE_DIR=own)
  # JAX's own thresholds: a program that compiled in under a second is not written
  assert out == {"returned": own, "dir": own, "min_time": 1.0, "min_size": 0, "written": 0}
  out = _rules(tmp_path, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="2.5")
  assert out["dir"] == str(tmp_path / "cache" / "jax") and out["min_time"] == 2.5


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_opt_out(tmp_path, value):
  out = _rules(tmp_path, METAJAX_COMPILATION_CACHE=value)
  assert out["returned"] is None and out["dir"] is None and out["written"] is None
  assert not (tmp_path / "cache" / "jax").exists()


def test_a_bad_setting_names_the_variable_and_the_fix(tmp_path):
  out = _rules(tmp_path, METAJAX_COMPILATION_CACHE="sometimes")
  assert out["returned"].startswith("ValueError: METAJAX_COMPILATION_CACHE='sometimes'")
  assert "set it to 0" in out["returned"] and out["dir"] is None
