"""Trainer: exact resumption (in process and after SIGKILL), damaged checkpoints, NaN guard."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pytest

import metajax
from metajax.data import _paths
from metajax.train import Checkpointer, Config, NonFiniteError, train
from metajax.train.metrics_log import read_metrics
from metajax.train.trainer import _setup

# Every train() call builds (and compiles) its own meta-step; the persistent compilation cache
# lets the later calls, and the subprocess of the SIGKILL test, reuse the first compilation.
_COMPILE_CACHE = _paths.cache_dir() / "jax_compile_tests"  # under $METAJAX_CACHE_DIR
jax.config.update("jax_compilation_cache_dir", str(_COMPILE_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

# A tiny Conv-4 on real Omniglot, small enough to compile in seconds.
TINY = Config(
    name="tiny", algorithm="maml", algorithm_kwargs=dict(inner_lr=0.4, steps=1, eval_steps=2),
    model="conv4", model_kwargs=dict(filters=4, pooling="stride"), dataset="omniglot",
    ways=3, shots=1, queries=1, meta_batch=2, meta_steps=6, eval_every=2, eval_episodes=4,
    test_episodes=4, eval_batch=4, adaptation_steps=2, adaptation_episodes=4, log_every=1,
    keep_checkpoints=2, seed=3)


def _records(run_dir, splits=("train", "val", "test", "adaptation")):
  return [r for r in read_metrics(run_dir) if r["split"] in splits]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, omniglot_root):
  """An uninterrupted run of TINY."""
  run_dir = tmp_path_factory.mktemp("straight")
  result = train(TINY.replace(run_dir=str(run_dir)))
  return run_dir, result


def test_straight_run_writes_everything(straight):
  run_dir, result = straight
  assert result.completed and result.step == 6
  for name in ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png",
               "adaptation.png"):
    assert (run_dir / name).exists(), name
  records = read_metrics(run_dir)
  assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
  assert [r["step"] for r in records if r["split"] == "val"] == [2, 4, 6]
  test = [r for r in records if r["split"] == "test"]
  assert len(test) == 1 and test[0]["step"] == result.best_step
  assert [r["inner_steps"] for r in records if r["split"] == "adaptation"] == [0, 1, 2]
  # keep the last 2 plus the best
  steps = Checkpointer(run_dir / "checkpoints").steps()
  assert steps[-2:] == [4, 6] and result.best_step in steps


def test_resume_after_interruption_is_bit_identical(straight, tmp_path):
  run_dir, _ = straight
  first = train(TINY.replace(run_dir=str(tmp_path)), interrupt_at=3)
  assert first.stopped_by == "interrupt" and first.step == 3 and not first.completed
  messages = []
  second = train(TINY.replace(run_dir=str(tmp_path)), report=messages.append)
  assert second.resumed_from == 3 and second.completed
  assert any("step 3" in m for m in messages)
  assert _records(tmp_path) == _records(run_dir)


def test_sigkill_mid_run_then_resume(straight, tmp_path):
  run_dir, _ = straight
  config_file = tmp_path / "tiny.py"
  config_file.write_text(
      "from metajax.train import Config\n"
      f"def get_config():\n  return Config(**{json.loads(TINY.to_json())!r})\n")
  out = tmp_path / "run"
  # slow the run down so that it is surely killed mid-way: 200 steps
  command = [sys.executable, "-m", "metajax.cli", "train", str(config_file), f"run_dir={out}",
             "meta_steps=200", "--no-progress"]
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(_COMPILE_CACHE),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
  deadline = time.monotonic() + 240
  checkpoints = out / "checkpoints"
  while time.monotonic() < deadline and process.poll() is None:
    if checkpoints.exists() and any(p.name.isdigit() and int(p.name) >= 2
                                    for p in checkpoints.iterdir()):
      break
    time.sleep(0.2)
  assert process.poll() is None, process.stderr.read().decode()[-2000:]
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  process.stderr.close()
  result = train(TINY.replace(run_dir=str(out)))  # meta_steps may change on resumption
  assert result.completed and result.resumed_from is not None and result.resumed_from >= 2
  assert _records(out, ("train", "val")) == _records(run_dir, ("train", "val"))
  assert _records(out, ("test",)) == _records(run_dir, ("test",))


def test_damaged_checkpoints_fall_back_to_the_previous_one(straight, tmp_path):
  run_dir, _ = straight
  copy = tmp_path / "copy"
  shutil.copytree(run_dir, copy)
  checkpointer = Checkpointer(copy / "checkpoints", keep=2)
  steps = checkpointer.steps()
  template = _setup(TINY).template
  # Flip bytes in every data file of the newest checkpoint, truncate those of the one before.
  newest, previous = copy / "checkpoints" / str(steps[-1]), copy / "checkpoints" / str(steps[-2])
  for path in (newest / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 64 and "manifest" not in path.name:
      data = bytearray(path.read_bytes())
      data[-40:-20] = bytes(20)
      path.write_bytes(bytes(data))
  reports = []
  state, step, problems = checkpointer.restore_latest(template, report=reports.append)
  assert step == steps[-2], problems
  assert len(problems) == 1 and str(newest) in problems[0]
  assert f"previous checkpoint (step {steps[-2]})" in problems[0]
  assert reports == problems
  for path in (previous / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 64:
      with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
  with pytest.raises(Exception, match=str(previous)):
    checkpointer.restore(steps[-2], template)
  checkpointer.close()


def test_a_validation_tie_names_the_checkpoint_that_is_kept(tmp_path):
  """Equal validation accuracies: the best-1 policy keeps the newer step, and best_step must
  name that one (an H200 run reported step 14000 as best but tested the 19000 it kept)."""
  params = {"w": jnp.ones(3)}
  state = metajax.MetaTrainState(jnp.zeros([], jnp.int32), params, optax.sgd(0.1).init(params))
  for keep, kept in [(1, [2, 3]), (3, [1, 2, 3])]:
    checkpointer = Checkpointer(tmp_path / f"keep{keep}", keep=keep)
    for step, accuracy in [(1, 0.5), (2, 0.5), (3, 0.4)]:
      checkpointer.save(step, state, val_accuracy=accuracy)
    assert checkpointer.steps() == kept
    assert checkpointer.best_step() == 2 and checkpointer.choose("best") == 2
    checkpointer.close()


def test_nan_guard_stops_with_the_step_range(tmp_path, omniglot_root):
  config = TINY.replace(run_dir=str(tmp_path), learning_rate=1e30, meta_steps=4, log_every=2,
                        eval_every=4, algorithm_kwargs=dict(inner_lr=1e30, steps=1))
  with pytest.raises(NonFiniteError, match=r"between meta-steps 1 and 2") as error:
    train(config)
  assert "loss" in str(error.value) or "grad_norm" in str(error.value)
  assert "no checkpoint was saved yet" in str(error.value)
  assert Checkpointer(tmp_path / "checkpoints").steps() == []


@pytest.mark.parametrize("change, key", [
    (dict(algorithm="maml2"), "algorithm"),
    (dict(meta_steps=-5), "meta_steps"),
    (dict(ways=5000), "ways"),
    (dict(test_ways=800), "test_ways"),
    (dict(shots=15, queries=10), "shots"),
    (dict(algorithm_kwargs=dict(inner_lr=0.1, stepz=2)), "algorithm_kwargs.stepz"),
    (dict(val_split="validation"), "val_split"),
])
def test_bad_config_fails_before_any_work(tmp_path, change, key):
  run_dir = tmp_path / "never"
  with pytest.raises(ValueError, match=key.replace(".", r"\.")):
    train(TINY.replace(run_dir=str(run_dir), **change))
  assert not run_dir.exists()


def test_resume_refuses_changed_config(straight, tmp_path):
  run_dir, _ = straight
  copy = tmp_path / "copy"
  shutil.copytree(run_dir, copy)
  with pytest.raises(ValueError, match="meta_batch"):
    train(TINY.replace(run_dir=str(copy), meta_batch=4))
  assert json.loads(Path(copy / "config.json").read_text())["meta_batch"] == 2


@pytest.mark.parametrize("algorithm", ["protonet", "matching_net", "relation_net", "siamese",
                                       "r2d2", "reptile"])
def test_every_algorithm_trains_by_name(algorithm, tmp_path, omniglot_root):
  """The trainer builds each registered algorithm from its name alone and runs it end to end."""
  from metajax.train.registry import ALGORITHMS

  gradient_based = ALGORITHMS[algorithm].gradient_based
  model_kwargs = dict(filters=4, pooling="max")
  if algorithm == "relation_net":
    model_kwargs.update(flatten=False, pooled_blocks=2)
  extra = dict(relation_filters=4, relation_hidden=4) if algorithm == "relation_net" else {}
  config = TINY.replace(
      algorithm=algorithm, algorithm_kwargs=(dict(inner_lr=0.1, steps=1) if gradient_based
                                             else extra),
      model_kwargs=model_kwargs, optimizer="reptile" if algorithm == "reptile" else "adam",
      meta_steps=2, adaptation_steps=0, run_dir=str(tmp_path / algorithm),
      test_ways=None if gradient_based else 4)
  result = train(config)
  assert result.completed and result.step == 2
  assert 0.0 <= result.test["accuracy"] <= 1.0
  losses = [r["loss"] for r in _records(tmp_path / algorithm, ("train",))]
  assert len(losses) == 2 and all(map(math.isfinite, losses))


def test_metric_learners_get_the_episode_class_count_as_width():
  """Meta-training scores config.ways classes, validation and test config.eval_ways, not the
  support size (which at 2 shots would add an empty column per class)."""
  config = TINY.replace(algorithm="protonet", algorithm_kwargs={}, shots=2, test_ways=5,
                        model_kwargs=dict(filters=4, pooling="max"))
  setup = _setup(config)
  params = setup.template.params
  images, labels = jax.numpy.zeros((6, 28, 28, 1)), jax.numpy.repeat(jax.numpy.arange(3), 2)
  for learner, ways in ((setup.learner, 3), (setup.eval_learner, 5)):
    head = learner.adapt(params, images, labels)
    assert learner.predict(params, head, images[:2]).shape == (2, ways)


def test_evaluate_run_at_other_ways_shots_and_queries(straight, tmp_path):
  from metajax.train import evaluate_run

  run_dir, _ = straight
  same = evaluate_run(run_dir, episodes=4)
  assert (same["ways"], same["shots"]) == (3, 1) and 0.0 <= same["accuracy"] <= 1.0
  more_shots = evaluate_run(run_dir, episodes=4, shots=3)
  assert more_shots["shots"] == 3 and more_shots["episodes_digest"] != same["episodes_digest"]
  assert evaluate_run(run_dir, episodes=4, queries=1)["queries"] == 1
  with pytest.raises(ValueError, match="queries"):  # 1 shot + 20 queries > 20 images
    evaluate_run(run_dir, episodes=4, queries=20)
  with pytest.raises(ValueError, match="test_ways"):  # MAML's head is 3-way
    evaluate_run(run_dir, episodes=4, ways=5)
  with pytest.raises(ValueError, match="shots"):  # Omniglot has 20 images per class
    evaluate_run(run_dir, episodes=4, shots=20)
  proto = TINY.replace(algorithm="protonet", algorithm_kwargs={}, meta_steps=2,
                       model_kwargs=dict(filters=4, pooling="max"), adaptation_steps=0,
                       run_dir=str(tmp_path / "proto"))
  train(proto)
  # Another model and learner, the same seed, split and shape: the same episodes.
  assert evaluate_run(tmp_path / "proto", episodes=4)["episodes_digest"] == same["episodes_digest"]
  wider = evaluate_run(tmp_path / "proto", episodes=4, ways=7, shots=2)
  assert (wider["ways"], wider["shots"]) == (7, 2) and 0.0 <= wider["accuracy"] <= 1.0
  # A transfer evaluator on the ProtoNet embedding, with its defaults and with a stronger L2:
  # the probe's softmax flattens, so the query loss rises.
  probe = evaluate_run(tmp_path / "proto", episodes=4, evaluator="linear_probe")
  strong = evaluate_run(tmp_path / "proto", episodes=4, evaluator="linear_probe",
                        evaluator_kwargs={"l2": 100.0})
  assert probe["evaluator_kwargs"] == {} and strong["evaluator_kwargs"] == {"l2": 100.0}
  assert strong["loss"] > probe["loss"] and probe["episodes_digest"] == same["episodes_digest"]
  with pytest.raises(ValueError, match="l3"):
    evaluate_run(tmp_path / "proto", episodes=4, evaluator="linear_probe",
                 evaluator_kwargs={"l3": 1.0})
  with pytest.raises(ValueError, match="need an evaluator"):
    evaluate_run(tmp_path / "proto", episodes=4, evaluator_kwargs={"l2": 1.0})


def test_a_pretraining_runs_own_evaluator_arguments_are_the_default():
  from metajax.train import registry

  config = TINY.replace(algorithm="pretrain", algorithm_kwargs=dict(
      evaluator="linear_probe", evaluator_kwargs=dict(l2=0.5)))
  assert registry.evaluator_kwargs_for_run(config, "linear_probe") == {"l2": 0.5}
  assert registry.evaluator_kwargs_for_run(config, "linear_probe", {"l2": 2.0}) == {"l2": 2.0}
  assert registry.evaluator_kwargs_for_run(config, "nearest_centroid") == {}
  with pytest.raises(ValueError, match="head"):  # MAML has no embedding to score
    registry.evaluator_kwargs_for_run(TINY, "linear_probe")
