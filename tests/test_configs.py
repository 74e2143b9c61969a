"""Every config in configs/ loads and validates; overrides are typed and checked."""

import importlib.util
from pathlib import Path

import pytest

from metajax.train.config import Config, SinusoidConfig, apply_overrides, load_config

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
    assert isinstance(config, Config | SinusoidConfig)
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
