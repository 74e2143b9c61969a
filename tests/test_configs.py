"""Every config in configs/ loads and validates; overrides are typed and checked."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import jax.numpy as jnp
import pytest

from metajax.train.config import Config, SinusoidConfig, apply_overrides, load_config
from metajax.train.registry import build_optimizer
from metajax.train.rl import RLConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


def _settings(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.get_config.__doc__, f"{path.name}: get_config needs a docstring"
  assert "Command:" in module.__doc__ and "metajax train" in module.__doc__
  return getattr(module, "SETTINGS", (None,))


def test_there_are_configs():
  names = {p.stem for p in CONFIGS}
  for algorithm in ("maml", "fomaml", "reptile", "anil", "meta_sgd", "protonet", "matching_net"):
    assert f"{algorithm}_omniglot" in names
  assert {"maml_tiny_imagenet", "protonet_tiny_imagenet", "sinusoid_maml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_validates(path):
  for setting in _settings(path):
    spec = str(path) if setting is None else f"{path}:{setting}"
    config = load_config(spec)
    assert isinstance(config, Config | SinusoidConfig | RLConfig)
    if isinstance(config, Config):
      assert config.test_episodes >= 600
      assert setting is None or f"{config.eval_ways}w{config.eval_shots}s" == setting


def test_overrides_are_coerced_and_checked():
  config = load_config(str(CONFIGS[0].parent / "maml_omniglot.py") + ":5w1s",
                       ["meta_steps=10", "learning_rate=1", "algorithm_kwargs.inner_lr=0.1",
                        "test_inner_steps=None", "algorithm=fomaml", "seed=7.0"])
  assert config.meta_steps == 10 and config.learning_rate == 1.0
  assert isinstance(config.learning_rate, float) and config.seed == 7
  assert config.algorithm_kwargs["inner_lr"] == 0.1 and config.algorithm_kwargs["steps"] == 1
  assert config.algorithm == "fomaml" and config.test_inner_steps is None
  # JSON/YAML spellings are the Python values, in dictionary entries as in typed fields.
  words = apply_overrides(config, ["algorithm_kwargs.first_order=true", "test_inner_steps=null",
                                   "algorithm_kwargs.remat=False", "algorithm_kwargs.x=none"])
  assert words.algorithm_kwargs["first_order"] is True and words.test_inner_steps is None
  assert words.algorithm_kwargs["remat"] is False and words.algorithm_kwargs["x"] is None
  with pytest.raises(ValueError, match="'meta_stepz'"):
    apply_overrides(config, ["meta_stepz=3"])
  with pytest.raises(ValueError, match="'meta_steps' must be int"):
    apply_overrides(config, ["meta_steps=abc"])
  with pytest.raises(ValueError, match="key=value"):
    apply_overrides(config, ["meta_steps"])
  with pytest.raises(ValueError, match="'ways'"):
    load_config(str(CONFIGS[0].parent / "maml_omniglot.py") + ":5w1s", ["ways=10000"])
  with pytest.raises(ValueError, match="not one of"):
    load_config(str(CONFIGS[0].parent / "maml_omniglot.py") + ":7w3s")


def _adam_rates(config, steps):
  """Adam's step sizes: with a constant gradient its update is -rate * sign(gradient)."""
  optimizer = build_optimizer(config)
  params = jnp.zeros([3])
  state = optimizer.init(params)
  rates = []
  for _ in range(steps):
    updates, state = optimizer.update(jnp.array([2.0, -1.0, 0.5]), state, params)
    rates.append(-float(updates[0]))
    assert float(updates[1]) == pytest.approx(rates[-1], rel=1e-4)
  return rates


def test_learning_rate_schedules_follow_their_formulas():
  base = load_config(str(CONFIGS[0].parent / "maml_omniglot.py") + ":5w1s")
  step_decay = dataclasses.replace(base, learning_rate=1e-2, optimizer_kwargs=dict(
      decay_every=3, decay_factor=0.5))
  expected = [1e-2 * 0.5 ** (t // 3) for t in range(8)]
  assert _adam_rates(step_decay, 8) == pytest.approx(expected, rel=1e-4)
  cosine = dataclasses.replace(base, learning_rate=1e-2, meta_steps=6, optimizer_kwargs=dict(
      schedule="cosine", min_learning_rate=1e-4))
  expected = [1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * min(t, 6) / 6)) / 2
              for t in range(8)]
  assert _adam_rates(cosine, 8) == pytest.approx(expected, rel=1e-4)


BAD_OPTIMIZER_KWARGS = [
    ("maml", ["schedule=cosin"], "'optimizer_kwargs.schedule'.*'cosin'"),
    ("maml", ["schedule=cosine", "decay_every=5"], "both schedule='cosine' and decay_every=5"),
    ("maml", ["betas=1"], "'optimizer_kwargs'.*adam does not accept"),
    ("maml", ["decay_factor=0.1"], "'optimizer_kwargs.decay_factor'=0.1 has no effect"),
    ("maml", ["decay_every=0"], "'optimizer_kwargs.decay_every' must be a positive"),
    ("maml", ["decay_every=5", "decay_factor=2"], "'optimizer_kwargs.decay_factor' must be in"),
    ("maml", ["min_learning_rate=1e-5"], "'optimizer_kwargs.min_learning_rate'=1e-05 has no"),
    ("maml", ["schedule=cosine", "min_learning_rate=1"],
     "'optimizer_kwargs.min_learning_rate' must be between"),
    ("reptile", ["decay_every=5"], "reptile optimizer anneals"),
]


@pytest.mark.parametrize("algorithm, overrides, message", BAD_OPTIMIZER_KWARGS)
def test_bad_optimizer_kwargs_fail_at_validation(algorithm, overrides, message):
  spec = str(CONFIGS[0].parent / f"{algorithm}_omniglot.py") + ":5w1s"
  with pytest.raises(ValueError, match=message):
    load_config(spec, [f"optimizer_kwargs.{override}" for override in overrides])
