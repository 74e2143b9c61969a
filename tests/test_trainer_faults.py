"""Runs that lose nothing (issue 26): time-based checkpoints, fresh/resume messages, the run-folder
lock, and SIGKILL at random times ending bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from metajax.train import Checkpointer, Config, train
from metajax.train.metrics_log import read_metrics
from metajax.train.run_lock import LOCK_NAME, RunLock, RunLockedError
from metajax.train.trainer import _setup

# Shared with tests/test_trainer.py: later train() calls and subprocesses reuse compilations.
_COMPILE_CACHE = Path.home() / ".cache" / "metajax" / "jax_compile_tests"
jax.config.update("jax_compilation_cache_dir", str(_COMPILE_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
_ENV = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(_COMPILE_CACHE),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

TINY = Config(
    name="tiny", algorithm="maml", algorithm_kwargs=dict(inner_lr=0.4, steps=1, eval_steps=2),
    model="conv4", model_kwargs=dict(filters=4, pooling="stride"), dataset="omniglot",
    ways=3, shots=1, queries=1, meta_batch=2, meta_steps=4, eval_every=4, eval_episodes=4,
    test_episodes=4, eval_batch=4, adaptation_steps=0, adaptation_episodes=4, log_every=1,
    keep_checkpoints=10, seed=3)


def _records(run_dir, splits=("train", "val", "test")):
  return [r for r in read_metrics(run_dir) if r["split"] in splits]


def _config_file(tmp_path: Path, config: Config) -> Path:
  path = tmp_path / "config.py"
  path.write_text("from metajax.train import Config\n"
                  f"def get_config():\n  return Config(**{json.loads(config.to_json())!r})\n")
  return path


def test_checkpoints_by_time_and_says_fresh_or_resuming(omniglot_root, tmp_path):
  config = TINY.replace(run_dir=str(tmp_path), checkpoint_every_minutes=1e-9)
  messages = []
  first = train(config, interrupt_at=3, report=messages.append)
  assert first.step == 3 and any("starting fresh" in m for m in messages), messages
  # eval_every=4: before the time-based checkpoints only the stop (step 3) was saved.
  assert Checkpointer(tmp_path / "checkpoints").steps() == [1, 2, 3]
  messages.clear()
  second = train(config, report=messages.append)
  assert second.completed and second.resumed_from == 3
  assert any("resuming" in m and "step 3" in m for m in messages), messages
  assert Checkpointer(tmp_path / "checkpoints").steps() == [1, 2, 3, 4]


def test_a_second_writer_is_refused(tmp_path, capsys):
  from metajax.cli import main

  config = TINY.replace(run_dir=str(tmp_path / "run"))
  with RunLock(config.run_dir):
    with pytest.raises(RunLockedError, match=rf"in use by pid {os.getpid()}.*{LOCK_NAME}"):
      train(config)
    assert main(["train", str(_config_file(tmp_path, config)), "--no-progress"]) != 0
  err = capsys.readouterr().err
  assert "in use by pid" in err and LOCK_NAME in err and "Traceback" not in err
  assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_lock_from_another_process_refuses_then_goes_stale_when_it_dies(tmp_path):
  run_dir = tmp_path / "run"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom metajax.train.run_lock import RunLock\n"
       f"RunLock({str(run_dir)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(300)\n"],
      stdout=subprocess.PIPE, text=True, env=_ENV)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on host"):
      RunLock(run_dir).acquire()
  finally:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
  reports = []
  with RunLock(run_dir, report=reports.append):  # the dead holder's lock is stale
    owner = json.loads((run_dir / LOCK_NAME).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
  assert len(reports) == 1 and f"pid {holder.pid}" in reports[0] and "stale" in reports[0]


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
  reports = []
  lock = RunLock(tmp_path, report=reports.append).acquire()
  lock.release()
  assert reports and f"pid {dead.pid}" in reports[0]


@pytest.mark.slow
def test_sigkill_at_random_times_then_resume_is_bit_identical(omniglot_root, tmp_path):
  """Five processes killed with SIGKILL at random moments (mid-step, mid-checkpoint, before the
  first checkpoint, ...), each resuming the last; the end equals an uninterrupted run."""
  config = TINY.replace(meta_steps=24, eval_every=8, checkpoint_every_minutes=0.002,
                        keep_checkpoints=3)
  straight = tmp_path / "straight"
  train(config.replace(run_dir=str(straight)))
  run = tmp_path / "killed"
  config_file = _config_file(tmp_path, config.replace(run_dir=str(run)))
  rng = random.Random(26)
  kills = 0
  for attempt in range(5):
    log = tmp_path / f"stderr{attempt}.txt"
    # Each killed process compiles into its own folder: a SIGKILL mid-write can leave a
    # truncated cache entry, and deserializing one crashed a later reader (CI, 2026-11-30).
    env = {**_ENV, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / f"jax_cache{attempt}")}
    with log.open("w") as err:
      process = subprocess.Popen(
          [sys.executable, "-m", "metajax.cli", "train", str(config_file), "--no-progress"],
          stdout=subprocess.DEVNULL, stderr=err, env=env)
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 240
    # Wait for the run to start (it says "starting fresh" or "resuming"), then for one step.
    while process.poll() is None and time.monotonic() < deadline:
      if "starting fresh" in log.read_text() or "resuming" in log.read_text():
        break
      time.sleep(0.05)
    mark = metrics.stat().st_mtime_ns if metrics.exists() else 0
    while process.poll() is None and time.monotonic() < deadline:
      if metrics.exists() and metrics.stat().st_mtime_ns != mark:
        break
      time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.6))
    if process.poll() is not None:  # finished before the kill
      assert process.returncode == 0, log.read_text()[-2000:]
      break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kills += 1
  assert kills >= 3, "the runs ended before they could be killed; make them longer"
  result = train(config.replace(run_dir=str(run)))
  assert result.completed
  assert _records(run) == _records(straight)
  template = _setup(config).template
  final = [Checkpointer(d / "checkpoints").restore(24, template) for d in (straight, run)]
  jax.tree.map(np.testing.assert_array_equal, *(jax.tree.map(np.asarray, s) for s in final))
