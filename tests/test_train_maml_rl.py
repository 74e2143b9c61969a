"""MAML-RL through the RL trainer and ``metajax train``: validation, resume, results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from metajax.algorithms.maml_rl import maml_rl, mlp_policy
from metajax.core.meta_step import init_meta_state
from metajax.data import _paths
from metajax.envs import point_navigation
from metajax.train.checkpoint import Checkpointer
from metajax.train.config import load_config
from metajax.train.metrics_log import read_metrics
from metajax.train.rl import RLConfig, train_rl

# Every train_rl call builds (and compiles) its own step and test; as in tests/test_trainer.py,
# the persistent compilation cache lets the later calls reuse the first compilation.
jax.config.update("jax_compilation_cache_dir", str(_paths.cache_dir() / "jax_compile_tests"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "maml_rl_navigation.py")
# A tiny run: 10-step episodes, 3 episodes per batch, an 8-unit policy, 2 goals per step.
TINY = ["env_kwargs.horizon=10", "episodes=3", "algorithm_kwargs.hidden=(8,)",
        "algorithm_kwargs.tasks_per_step=2", "log_every=1", "checkpoint_every=2",
        "test_tasks=6", "adapt_steps=2"]


def _maml_rl(**kwargs) -> RLConfig:
  return RLConfig(algorithm="maml_rl", env="point_navigation", algorithm_kwargs=kwargs)


BAD = [
    ({"inner_lr": -0.1}, r"algorithm_kwargs.inner_lr=-0.1: inner_lr must be a finite number > 0"),
    ({"learning_rate": float("nan")}, r"learning_rate=nan: learning_rate must be a finite"),
    ({"steps": -1}, r"steps=-1: steps \(inner policy-gradient steps\) must be an int >= 0"),
    ({"steps": 1.5}, r"steps=1.5"),
    ({"tasks_per_step": 0}, r"tasks_per_step=0: tasks_per_step must be an int >= 1"),
    ({"gamma": 1.5}, r"gamma=1.5: gamma must be a number in \(0, 1\]"),
    ({"baseline": "value"}, r"baseline='value': baseline must be 'linear' or 'none'"),
    ({"first_order": "yes"}, r"first_order='yes': first_order must be True or False"),
    ({"hidden": 8}, r"hidden=8: hidden must be a tuple of layer widths.*hidden=\(100,100\)"),
    ({"hidden": (8, 0)}, r"hidden=\(8, 0\)"),
    ({"episodes": 5}, r"algorithm_kwargs.episodes=5: MAML-RL takes episodes from the config "
                      r"key 'episodes'; drop algorithm_kwargs.episodes and set episodes=5"),
    ({"inner_steps": 1}, r"inner_steps=1 is not a MAML-RL option; use one of \['backtrack"),
    ({"outer": "sgd"}, r"outer='sgd': outer must be 'adam' or 'trpo'"),
    ({"max_kl": 0.05}, r"max_kl=0.05 is a TRPO option; add algorithm_kwargs.outer='trpo'"),
    ({"outer": "trpo", "steps": 0}, r"outer='trpo' needs algorithm_kwargs.steps >= 1"),
    ({"outer": "trpo", "max_kl": 0}, r"max_kl=0: max_kl must be a finite number > 0"),
    ({"outer": "trpo", "backtrack_ratio": 1}, r"backtrack_ratio must lie in \(0, 1\)"),
    ({"outer": "trpo", "cg_iters": 0}, r"cg_iters=0: cg_iters must be an int >= 1"),
]


@pytest.mark.parametrize("kwargs, message", BAD, ids=lambda v: str(v)[:30])
def test_bad_maml_rl_kwargs_name_key_value_and_fix(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _maml_rl(**kwargs).validated()


def test_bad_config_fails_before_the_run_folder_exists(tmp_path):
  with pytest.raises(ValueError, match="adapt_steps' must be an int >= 0, got -1"):
    train_rl(_maml_rl().replace(adapt_steps=-1, run_dir=str(tmp_path / "run")))
  with pytest.raises(ValueError, match="hidden=8"):  # a command-line override, as typed
    load_config(CONFIG + ":smoke", ["algorithm_kwargs.hidden=8"])
  assert not (tmp_path / "run").exists()
  _maml_rl(hidden=[4, 4], steps=0, first_order=True, gamma=1).validated()  # all valid


def _final_params(run: Path, template):
  checkpointer = Checkpointer(run / "checkpoints")
  try:
    state, step, problems = checkpointer.restore_latest(template)
  finally:
    checkpointer.close()
  assert not problems
  return state.params, step


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path, capsys):
  """4 steps in one go against 2 steps through ``metajax train``, then 2 more resumed."""
  from metajax.cli import main

  whole, halves = tmp_path / "whole", tmp_path / "halves"
  config = load_config(CONFIG + ":smoke", [*TINY, "meta_steps=4", f"run_dir={whole}"])
  result = train_rl(config, progress=False)
  assert result.steps == 4
  args = ["train", CONFIG + ":smoke", *TINY, f"run_dir={halves}", "--no-progress"]
  assert main([*args, "meta_steps=2"]) == 0
  assert [r["step"] for r in read_metrics(halves)] == [1, 2]
  assert main([*args, "meta_steps=4"]) == 0
  out = capsys.readouterr().out
  assert "4 outer steps" in out and "test: mean return per episode after k policy" in out

  # Same parameters (exactly), metrics and test on the same fresh tasks.
  env = point_navigation(horizon=10)
  template = init_meta_state(maml_rl(env, mlp_policy(env, hidden=(8,)), episodes=3),
                             optax.adam(1e-2))
  (a, step_a), (b, step_b) = _final_params(whole, template), _final_params(halves, template)
  assert step_a == step_b == 4
  jax.tree.map(np.testing.assert_array_equal, a, b)
  initial = template.params["policy"]["layers"][0]["w"]
  assert not np.array_equal(np.asarray(a["policy"]["layers"][0]["w"]), np.asarray(initial))
  assert read_metrics(whole) == read_metrics(halves)
  records = read_metrics(whole)
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  assert {"pre_return", "post_return", "loss"} <= set(records[0])
  test = json.loads((halves / "results.json").read_text())["test"]
  assert test == json.loads((whole / "results.json").read_text())["test"]

  # The test: the return after 0, 1, 2 adaptation steps on 6 fresh goals, trained and initial.
  assert test["adaptation_steps"] == [0, 1, 2] and test["tasks"] == 6 and test["step"] == 4
  for summary in (test, test["initial"]):
    assert len(summary["mean"]) == len(summary["ci95"]) == 3
    assert all(math.isfinite(v) and v < 0 for v in summary["mean"])  # reward = -distance
    assert all(math.isfinite(v) and v > 0 for v in summary["ci95"])
  for name in ("learning_curve.png", "adaptation.png", "config.json"):
    assert (halves / name).exists()

  # Resuming with a changed algorithm setting is refused, naming the key.
  assert main([*args, "meta_steps=6", "algorithm_kwargs.inner_lr=0.5"]) == 1
  assert "the config changed in ['algorithm_kwargs']" in capsys.readouterr().err


def test_trpo_outer_step_trains_and_resumes_bit_for_bit(tmp_path):
  """``outer="trpo"`` through the trainer: its metrics are logged, and 2 + 2 resumed steps
  equal 4 in one go (the step keeps no optimizer state)."""
  trpo = [*TINY, "algorithm_kwargs.outer='trpo'", "test_tasks=2", "adapt_steps=1"]
  whole, halves = tmp_path / "whole", tmp_path / "halves"
  train_rl(load_config(CONFIG + ":smoke", [*trpo, "meta_steps=4", f"run_dir={whole}"]),
           progress=False)
  for steps in (2, 4):
    train_rl(load_config(CONFIG + ":smoke", [*trpo, f"meta_steps={steps}",
                                              f"run_dir={halves}"]), progress=False)
  records = read_metrics(whole)
  assert records == read_metrics(halves) and [r["step"] for r in records] == [1, 2, 3, 4]
  assert {"kl", "accepted", "improvement", "backtracks"} <= set(records[0])
  assert all(r["kl"] <= 0.01 for r in records) and sum(r["accepted"] for r in records) >= 2
  env = point_navigation(horizon=10)
  template = init_meta_state(maml_rl(env, mlp_policy(env, hidden=(8,)), episodes=3),
                             optax.identity())
  (a, _), (b, _) = _final_params(whole, template), _final_params(halves, template)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_evaluate_reruns_the_final_test_of_an_rl_run(tmp_path, capsys):
  """``metajax evaluate RUN`` of a MAML-RL run reproduces its results.json test, takes other
  task counts, steps and checkpoints, and refuses few-shot flags and unsaved steps."""
  from metajax.cli import main
  from metajax.train.rl import evaluate_rl_run

  run = tmp_path / "run"
  train_rl(load_config(CONFIG + ":smoke", [*TINY, "meta_steps=2", "checkpoint_every=1",
                                            f"run_dir={run}"]),
           progress=False)
  saved = json.loads((run / "results.json").read_text())["test"]
  assert evaluate_rl_run(run) == saved
  other = evaluate_rl_run(run, checkpoint=1, test_tasks=3, adapt_steps=1)
  assert other["step"] == 1 and other["tasks"] == 3 and other["adaptation_steps"] == [0, 1]
  assert main(["evaluate", str(run), "--tasks", "3", "--step-sizes", "0.1,0.05"]) == 0
  out = capsys.readouterr().out
  assert f"{run} step 2: mean return per episode after k policy-gradient steps" in out
  assert "on 3 fresh tasks" in out
  assert main(["evaluate", str(run), "--ways", "5"]) == 1
  assert "is an RL run; --ways apply to few-shot runs only" in capsys.readouterr().err
  assert main(["evaluate", str(run), "--checkpoint", "7"]) == 1
  assert "checkpoint=7 is not 'last' or a saved step" in capsys.readouterr().err
  assert main(["evaluate", str(run), "--step-sizes", "0.1;0.05"]) == 1
  assert "--step-sizes '0.1;0.05' is not a comma-separated list" in capsys.readouterr().err
  few_shot = tmp_path / "few_shot"
  few_shot.mkdir()
  (few_shot / "config.json").write_text(json.dumps({"algorithm": "protonet"}))
  with pytest.raises(ValueError, match="is not an RL run"):
    evaluate_rl_run(few_shot)


def test_test_step_sizes_are_checked_and_used():
  """``adapt_step_sizes`` sets each test adaptation step's size: one per step, checked before
  anything compiles; ``(inner_lr,) * n`` equals the default and other sizes change the result."""
  with pytest.raises(ValueError, match=r"'adapt_step_sizes' must be None or 3 \(adapt_steps\)"):
    _maml_rl().replace(adapt_step_sizes=(0.1, 0.05)).validated()
  with pytest.raises(ValueError, match="adapt_step_sizes"):
    _maml_rl().replace(adapt_step_sizes=(0.1, -0.05, 0.05)).validated()
  env = point_navigation(horizon=5)
  learner = maml_rl(env, mlp_policy(env, hidden=(8,)), episodes=4, inner_lr=0.1)
  params, task, key = learner.init(), env.sample_task(jax.random.key(0)), jax.random.key(1)
  default = learner.evaluate(params, task, key, steps=2)["returns"]
  same = learner.evaluate(params, task, key, steps=2, step_sizes=(0.1, 0.1))["returns"]
  other = learner.evaluate(params, task, key, steps=2, step_sizes=(0.1, 1.0))["returns"]
  np.testing.assert_array_equal(default, same)
  np.testing.assert_array_equal(default[:2], other[:2])  # the second step's size acts last
  assert float(other[2]) != float(default[2])
  with pytest.raises(ValueError, match=r"step_sizes=\(0.1,\) must be 2 finite numbers"):
    learner.evaluate(params, task, key, steps=2, step_sizes=(0.1,))
