"""Multi-device and multi-process meta-training give the one-device run's results.

* 4 host-platform devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, which must be
  set before JAX initialises, hence a subprocess) train the same parameters as 1 device.
* Two real processes on localhost (``jax.distributed`` with a 127.0.0.1 coordinator, 2 CPU
  devices each) train, get SIGTERM in one process only, both save the same step, and a
  one-device process resumes to the one-device run's parameters; only process 0 writes logs.

The run is a tiny Conv-4 ProtoNet on real Omniglot (cheap to compile), trained with SGD: Adam
would turn the float noise of gradients that are zero in exact arithmetic (the conv biases before
batch norm) into full-size steps of either sign, so its parameters differ between layouts by the
learning rate, not by float error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from metajax.cli import main
from metajax.data import ClassDataset, episode_sampler
from metajax.data.augment import random_flip
from metajax.train import Checkpointer, Config, distributed, evaluate_run, train, validate
from metajax.train.metrics_log import read_metrics
from metajax.train.trainer import _setup

_COMPILE_CACHE = Path.home() / ".cache" / "metajax" / "jax_compile_tests"
TINY = Config(
    name="tiny", algorithm="protonet", model="conv4",
    model_kwargs=dict(filters=4, pooling="stride"), dataset="omniglot", ways=3, shots=1,
    queries=1, meta_batch=4, meta_steps=8, eval_every=2, optimizer="sgd", learning_rate=0.02,
    eval_episodes=6, test_episodes=6, eval_batch=6, adaptation_steps=0, log_every=1,
    keep_checkpoints=10, seed=3, checkpoint_every_minutes=None)
# eval_batch=6 does not split over 4 devices: evaluation fills the batch up with the next
# episodes and must drop their results.

_ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(_COMPILE_CACHE),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

FOUR_DEVICES = textwrap.dedent("""
  import json, sys
  from pathlib import Path
  import jax
  from metajax.train import Config, distributed, evaluate_run, train

  assert len(jax.devices()) == 4, jax.devices()
  tiny, root = Config(**json.loads(sys.argv[1])), Path(sys.argv[2])
  out = {}
  layout = distributed.device_layout(4)
  out["shards"] = layout.shards
  try:
    train(tiny.replace(devices=4, meta_batch=6, run_dir=str(root / "uneven")))
  except ValueError as error:
    out["uneven"] = str(error)
  out["uneven_wrote"] = sorted(p.name for p in (root / "uneven").glob("*")
                              if p.name in ("config.json", "checkpoints", "metrics.jsonl"))
  train(tiny.replace(devices=1, run_dir=str(root / "one")))
  train(tiny.replace(devices=4, meta_steps=4, run_dir=str(root / "four")))
  # metajax evaluate on the 4 devices: 7 episodes in batches of 6, each filled up to 8.
  from metajax.cli import main
  out["evaluate_rc"] = main(["evaluate", str(root / "one"), "--episodes", "7", "--checkpoint",
                             "last", "--devices", "4", "--json", str(root / "evaluate4.json")])
  try:
    evaluate_run(root / "one", episodes=7, devices=8)
  except ValueError as error:
    out["evaluate_too_many"] = str(error)
  print("RESULT " + json.dumps(out))
""")


def _params(run_dir: Path, step: int):
  checkpointer = Checkpointer(run_dir / "checkpoints")
  state = checkpointer.restore(step, _setup(TINY).template)
  checkpointer.close()
  return jax.tree.map(np.asarray, state.params)


def _assert_close(a, b, tolerance=1e-5):
  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), a, b)
  assert max(jax.tree.leaves(diffs)) < tolerance, diffs


def _records(run_dir: Path, split: str) -> list[dict]:
  return [r for r in read_metrics(run_dir) if r["split"] == split]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory, data_root):
  root = tmp_path_factory.mktemp("devices")
  env = {**_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, TINY.to_json(), str(root)], env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
  return root, json.loads(line[len("RESULT "):])


def test_four_devices_train_the_one_device_parameters(four_devices):
  root, out = four_devices
  assert out["shards"] == 4
  _assert_close(_params(root / "four", 4), _params(root / "one", 4))
  initial = jax.tree.map(np.asarray, _setup(TINY).template.params)
  moved = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), _params(root / "one", 4),
                       initial)
  assert max(jax.tree.leaves(moved)) > 1e-3  # the comparison is not between two initial states
  for split in ("train", "val"):
    one = [r for r in _records(root / "one", split) if r["step"] <= 4]
    four = _records(root / "four", split)
    assert [r["step"] for r in four] == [r["step"] for r in one] and four
    for a, b in zip(one, four):
      assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
      assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1e-6)
  assert [r["episodes"] for r in _records(root / "four", "val")] == [6, 6]


def test_uneven_task_batch_fails_before_any_work(four_devices):
  _, out = four_devices
  assert "'meta_batch' is 6" in out["uneven"] and "4 devices" in out["uneven"]
  assert "multiple of 4" in out["uneven"]
  assert out["uneven_wrote"] == []


def test_evaluate_on_four_devices_gives_the_one_device_numbers(four_devices, capsys):
  root, out = four_devices
  assert out["evaluate_rc"] == 0
  four = json.loads((root / "evaluate4.json").read_text())
  one = evaluate_run(root / "one", episodes=7, checkpoint="last")  # this process: 1 device
  assert (four["devices"], one["devices"], four["episodes"], four["step"]) == (4, 1, 7, 8)
  for name in ("accuracy", "accuracy_ci95", "loss", "loss_ci95"):
    assert four[name] == pytest.approx(one[name], rel=1e-5, abs=1e-6), name
  assert "has 4 device(s)" in out["evaluate_too_many"]
  assert "up to 4" in out["evaluate_too_many"]
  # Bad layouts fail before the run is even read (this folder does not exist).
  for devices, rule in (("2", "has 1 device(s)"), ("0", "config key 'devices' must be"),
                        ("some", "config key 'devices' must be")):
    assert main(["evaluate", str(root / "nothing"), "--devices", devices]) == 1
    assert rule in capsys.readouterr().err, devices


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# Gloo (JAX's CPU collectives) reports each connection on stdout from its own threads, e.g.
# "[Gloo] Rank 1 is connected to 3 peer ranks. Expected number of connected peer ranks is : 3";
# two reports written at once can split a line, so a fragment need not start with "[Gloo]",
# and a report's last number can land on a line of its own ("3": seen in a clean-clone CI run on
# 2026-12-07). metajax itself never prints a bare number.
_GLOO_REPORT = re.compile(r"^\[Gloo\]|peer ranks|^\s*\d+\s*$")


def _own_lines(stdout: str) -> list[str]:
  """A process's stdout less Gloo's connection reports: what metajax itself printed."""
  return [x for x in stdout.splitlines() if x.strip() and not _GLOO_REPORT.search(x)]


def test_two_processes_preempted_then_resumed_on_one_device(four_devices, tmp_path):
  root, _ = four_devices
  config_file = tmp_path / "tiny.py"
  config_file.write_text(
      "from metajax.train import Config\n"
      f"def get_config():\n  return Config(**{json.loads(TINY.to_json())!r})\n")
  run_dir = tmp_path / "run"
  port = _free_port()
  env = {k: v for k, v in _ENV.items() if k != "XLA_FLAGS"}
  env["JAX_NUM_CPU_DEVICES"] = "2"
  processes = [subprocess.Popen(
      [sys.executable, "-m", "metajax.cli", "train", str(config_file), f"run_dir={run_dir}",
       "meta_steps=40", "--no-progress", "--coordinator", f"127.0.0.1:{port}",
       "--num-processes", "2", "--process-id", str(i)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
  try:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
      if (run_dir / "checkpoints" / "2").is_dir():
        break
      time.sleep(0.1)
    assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
    processes[1].send_signal(signal.SIGTERM)  # a preemption notice to one host only
    outputs = [p.communicate(timeout=300) for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in processes] == [143, 143], outputs
  stopped = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
  last = max(stopped)
  assert 2 < last < 40, stopped  # stopped by the notice, not at the end
  assert f"after step {last}" in outputs[0][1]
  said = _own_lines(outputs[1][0])
  assert said == [] and "stopped" not in outputs[1][1]  # process 1 is silent
  train_records = _records(run_dir, "train")
  assert [r["step"] for r in train_records] == list(range(1, last + 1))  # written once

  # metajax evaluate over the same two processes (4 devices; 7 episodes in batches of 6, each
  # filled up to 8) scores the checkpoint as one device does; process 1 writes and says nothing.
  port = _free_port()
  evaluators = [subprocess.Popen(
      [sys.executable, "-m", "metajax.cli", "evaluate", str(run_dir), "--episodes", "7",
       "--checkpoint", str(last), "--json", str(tmp_path / f"evaluate{i}.json"),
       "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
  said = [p.communicate(timeout=300) for p in evaluators]
  assert [p.returncode for p in evaluators] == [0, 0], said
  assert "4 devices" in said[0][0]
  assert _own_lines(said[1][0]) == []
  assert not (tmp_path / "evaluate1.json").exists()
  two = json.loads((tmp_path / "evaluate0.json").read_text())
  one = evaluate_run(run_dir, episodes=7, checkpoint=last)
  assert (two["devices"], two["step"], two["episodes"]) == (4, last, 7)
  for name in ("accuracy", "accuracy_ci95", "loss", "loss_ci95"):
    assert two[name] == pytest.approx(one[name], rel=1e-5, abs=1e-6), name

  # The notice reaches the other process some steps later (more under load), so the run may
  # stop after the fixture's 8-step straight run; then a longer straight run is the reference.
  end, reference = 8, root / "one"
  if last >= end:
    end, reference = last + 2, tmp_path / "straight"
    train(TINY.replace(meta_steps=end, run_dir=str(reference)))
  result = train(TINY.replace(meta_steps=end, run_dir=str(run_dir)))  # one process, one device
  assert result.completed and result.resumed_from == last
  _assert_close(_params(run_dir, end), _params(reference, end))
  for split in ("train", "val", "test"):
    resumed, straight = _records(run_dir, split), _records(reference, split)
    assert [r["step"] for r in resumed] == [r["step"] for r in straight]
    for a, b in zip(straight, resumed):
      assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)


def test_layout_keys_are_checked_before_any_work():
  with pytest.raises(ValueError, match="needs a 'tasks' axis"):
    validate(TINY.replace(mesh={"data": 4}))
  with pytest.raises(ValueError, match="only repeat the same work"):
    distributed.parse_mesh({"tasks": 2, "model": 2}, 4)
  with pytest.raises(ValueError, match="multiply to 4"):
    distributed.parse_mesh({"tasks": 2}, 4)
  assert distributed.parse_mesh({"tasks": -1}, 4) == (("tasks",), (4,))
  with pytest.raises(ValueError, match="config key 'devices'"):
    validate(TINY.replace(devices="some"))
  with pytest.raises(ValueError, match="has 1 device"):
    distributed.device_layout(2)
  assert distributed.device_layout(None).mesh is None
  assert distributed.device_layout("all").mesh is None  # one CPU device here


def test_initialize_needs_all_arguments_and_must_come_first():
  with pytest.raises(ValueError, match="--process-id"):
    distributed.initialize(coordinator="127.0.0.1:1234", num_processes=2)
  jax.devices()  # the backends exist now
  with pytest.raises(RuntimeError, match="before JAX computes anything"):
    distributed.initialize(coordinator="127.0.0.1:1234", num_processes=2, process_id=0)
  assert distributed.initialize() is False


def test_mismatched_configs_across_processes_fail(tmp_path):
  script = textwrap.dedent("""
    import sys
    import jax
    from metajax.train import distributed
    jax.distributed.initialize(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]))
    layout = distributed.device_layout(None)
    try:
      distributed.check_same_config(layout, '{"seed": %s}' % sys.argv[2])
    except ValueError as error:
      print("ERROR", error)
  """)
  port = _free_port()
  env = {k: v for k, v in _ENV.items() if k != "XLA_FLAGS"}
  processes = [subprocess.Popen([sys.executable, "-c", script, str(port), str(i)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
  outputs = [p.communicate(timeout=120)[0] for p in processes]
  for output in outputs:  # every process raises, none waits for the others
    assert "ERROR the 2 processes were started with different configs" in output, outputs
    assert "process(es) [1] differ from process 0" in output


def test_a_slice_of_a_sampled_batch_equals_those_rows_of_the_batch():
  images = np.random.default_rng(0).integers(0, 256, (6, 5, 4, 4, 1), dtype=np.uint8)
  dataset = ClassDataset(images=images, class_names=tuple(f"c{i}" for i in range(6)), name="toy")
  sampler = episode_sampler(dataset, ways=3, shots=2, queries=1, batch_size=5,
                            augment=random_flip, augment_query=True)
  key = jax.random.key(7)
  whole = sampler.sample(key)
  for start, stop in ((0, 5), (1, 3), (4, 5)):
    part = sampler.sample_slice(key, start, stop)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(part), strict=True):
      np.testing.assert_array_equal(np.asarray(a)[start:stop], np.asarray(b))
  with pytest.raises(ValueError, match="not within the batch of 5"):
    sampler.sample_slice(key, 3, 6)
