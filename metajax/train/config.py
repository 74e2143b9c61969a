"""Experiment configs: a frozen dataclass, loaded from a Python file, overridden by ``key=value``.

A config file defines ``get_config(arg=None) -> Config`` whose docstring gives the command, the
runtime and the accuracy measured with it (big_vision style). ``path.py:arg`` passes ``arg``, so
one file can hold a family of settings (``configs/maml_omniglot.py:20w5s``).

Overrides are ``key=value`` strings. The value is parsed as a Python literal and coerced to the
field's type (``meta_steps=2000``, ``learning_rate=3e-4``, ``test_inner_steps=None``); entries of
the dictionary fields are set with a dot (``algorithm_kwargs.inner_lr=0.1``). Unknown keys and
values of the wrong type are errors naming the key.

:func:`validate` checks everything that can be checked without loading data or compiling, so a bad
config fails before any work starts.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a few-shot classification run needs.

  Attributes:
    name: a short label for the run.
    algorithm: one of ``metajax.train.registry.ALGORITHMS`` (``maml``, ``protonet``, ...).
    algorithm_kwargs: keyword arguments of the algorithm factory (``inner_lr``, ``steps``, ...).
    model: backbone, one of ``metajax.train.registry.MODELS`` (``conv4``, ``resnet12``).
    model_kwargs: keyword arguments of the model factory (``filters``, ``pooling``, ...).
    dataset: ``omniglot`` or ``tiny_imagenet``.
    dataset_kwargs: keyword arguments of the loader (``image_size`` for Omniglot).
    train_split, val_split, test_split: split names of the dataset.
    ways, shots, queries: episode shape during meta-training.
    test_ways, test_shots, test_queries: episode shape for validation and test (``None``: as in
      training).
    meta_batch: tasks per meta-update.
    optimizer: outer optimizer: ``adam``, ``sgd`` or ``reptile`` (SGD toward adapted weights).
    learning_rate: outer step size (Reptile's meta step size epsilon).
    optimizer_kwargs: the learning-rate schedule (``decay_every``/``decay_factor``, or
      ``schedule="cosine"``/``min_learning_rate``; see
      ``metajax.train.registry.build_optimizer``) and extra optimizer arguments
      (``anneal_steps`` for Reptile, ``b1`` for Adam, ...).
    meta_steps: outer iterations.
    time_budget_minutes: stop meta-training after this much wall-clock time (``None``: no limit).
    eval_every: validate (and checkpoint) every this many meta-steps.
    checkpoint_every_minutes: also checkpoint when this much wall-clock time passed since the
      last checkpoint (``None``: only every ``eval_every`` steps), so a killed run loses at most
      that much work.
    eval_episodes: validation episodes.
    test_episodes: final test episodes (600 as the papers report).
    eval_batch: episodes sampled per evaluation call (evaluated one at a time on CPU, vmapped on
      GPU/TPU; see :func:`metajax.evaluate_tasks`).
    test_inner_steps: inner steps at validation/test time (``None``: the algorithm's
      ``eval_steps``); ignored by metric learners.
    adaptation_steps: largest number of test-time inner steps in the adaptation plot (0: no plot).
    adaptation_episodes: test episodes per point of the adaptation plot.
    batching: task batching of the meta-step (see :func:`metajax.make_meta_step`).
    log_every: fetch metrics, check them and update the progress bar every this many steps.
    keep_checkpoints: how many latest checkpoints to keep (the best one is kept as well).
    seed: the only source of randomness: model init, episodes and step keys derive from it.
    run_dir: the run folder (config, metrics, checkpoints, plots).
    devices: devices to meta-train and evaluate on: ``"all"``, a number (the same number from
      each process) or ``None`` (one device, or all of them in a multi-process run). The task
      batch is sharded over them and parameters are replicated (see
      ``metajax.train.distributed``); results equal the one-device run's up to float
      summation order, and a run may resume on another number of devices.
    mesh: axis sizes of the device mesh, e.g. ``{"tasks": -1}`` (the default when empty): the
      task batch is sharded over the ``"tasks"`` axis.

  Example:
    >>> config = Config(algorithm="protonet", ways=20, shots=5, meta_steps=2000)
    >>> config.eval_ways, config.replace(test_ways=5).eval_ways
    (20, 5)
  """

  name: str = "run"
  algorithm: str = "maml"
  algorithm_kwargs: dict = dataclasses.field(default_factory=dict)
  model: str = "conv4"
  model_kwargs: dict = dataclasses.field(default_factory=dict)
  dataset: str = "omniglot"
  dataset_kwargs: dict = dataclasses.field(default_factory=dict)
  train_split: str = "train"
  val_split: str = "val"
  test_split: str = "test"
  ways: int = 5
  shots: int = 1
  queries: int = 15
  test_ways: int | None = None
  test_shots: int | None = None
  test_queries: int | None = None
  meta_batch: int = 32
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
  meta_steps: int = 60_000
  time_budget_minutes: float | None = None
  eval_every: int = 500
  checkpoint_every_minutes: float | None = 5.0
  eval_episodes: int = 200
  test_episodes: int = 600
  eval_batch: int = 50
  test_inner_steps: int | None = None
  adaptation_steps: int = 10
  adaptation_episodes: int = 200
  batching: str = "auto"
  log_every: int = 10
  keep_checkpoints: int = 3
  seed: int = 0
  run_dir: str = "runs/run"
  devices: int | str | None = None
  mesh: dict = dataclasses.field(default_factory=dict)

  @property
  def eval_ways(self) -> int:
    return self.ways if self.test_ways is None else self.test_ways

  @property
  def eval_shots(self) -> int:
    return self.shots if self.test_shots is None else self.test_shots

  @property
  def eval_queries(self) -> int:
    return self.queries if self.test_queries is None else self.test_queries

  def replace(self, **changes: Any) -> Config:
    """A copy with ``changes`` (no validation; call :func:`validate`)."""
    return dataclasses.replace(self, **changes)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: dict) -> Config:
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"unknown config key(s) {unknown}; known keys: {field_names()}")
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class SinusoidConfig:
  """MAML sinusoid regression (:func:`metajax.train.train_sinusoid`'s arguments).

  Attributes:
    meta_steps, meta_batch, inner_lr, inner_steps, learning_rate, seed: as
      :func:`~metajax.train.train_sinusoid`.
    shots: the values of K; one model is meta-trained per K (K support and K query points per
      training task) and tested on new K-shot tasks, as ``metajax sinusoid`` does. A model
      meta-trained with K=10 and adapted with K=5 diverges on a few tasks at alpha=0.01.
    test_tasks: new tasks per K in the adaptation table.
    run_dir: where the table (``sinusoid_table.json``) and the config go.

  Example:
    >>> config = validate(SinusoidConfig(meta_steps=1000, shots=(10,)))
    >>> config.shots, config.inner_lr
    ((10,), 0.01)

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    ICML 2017, Section 5.1 (the defaults are the paper's sinusoid settings).
  """

  meta_steps: int = 70_000
  meta_batch: int = 25
  shots: tuple[int, ...] = (5, 10)
  inner_lr: float = 0.01
  inner_steps: int = 1
  learning_rate: float = 1e-3
  seed: int = 0
  test_tasks: int = 1_000
  run_dir: str = "runs/sinusoid_maml"

  def replace(self, **changes: Any) -> SinusoidConfig:
    return dataclasses.replace(self, **changes)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def parse_setting(arg: str | None, allowed: Sequence[str]) -> tuple[int, int]:
  """``"5w1s"`` -> ``(5, 1)``, checked against the settings a config file offers."""
  if arg not in allowed:
    raise ValueError(f"setting {arg!r} is not one of {list(allowed)}; call the config as "
                     f"'file.py:{allowed[0]}'")
  ways, shots = arg.rstrip("s").split("w")
  return int(ways), int(shots)


# Changing these between a run and its resumption would change what is trained.
RESUME_MUTABLE = ("meta_steps", "time_budget_minutes", "test_episodes", "adaptation_steps",
                  "adaptation_episodes", "eval_batch", "keep_checkpoints", "run_dir", "name",
                  "devices", "mesh",
                  "checkpoint_every_minutes")


def field_names() -> list[str]:
  return [f.name for f in dataclasses.fields(Config)]


def load_config(spec: str | Path, overrides: Sequence[str] = ()) -> Config | SinusoidConfig:
  """Loads ``path.py`` or ``path.py:arg`` and applies ``key=value`` overrides.

  Args:
    spec: the config file, optionally with ``:arg`` for ``get_config(arg)``.
    overrides: ``key=value`` strings.

  Returns:
    The validated :class:`Config`.

  Raises:
    FileNotFoundError: when the file does not exist.
    ValueError: for a bad override or config value (the message names the key).

  Example:
    >>> config = load_config("configs/maml_omniglot.py:5w1s", ["meta_steps=100"])  # doctest: +SKIP
  """
  spec = str(spec)
  path, arg = spec, None
  if ":" in Path(spec).name:
    path, arg = spec.rsplit(":", 1)
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} not found")
  module_spec = importlib.util.spec_from_file_location(f"_metajax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path} defines no get_config(); a config file must define one")
  takes_arg = bool(inspect.signature(module.get_config).parameters)
  if arg is not None and not takes_arg:
    raise ValueError(f"{path}: get_config() takes no argument, but {spec!r} passes {arg!r}")
  settings = getattr(module, "SETTINGS", ())
  if arg is None and takes_arg and len(settings) > 1:
    raise ValueError(f"{path} holds {len(settings)} settings {list(settings)} but none was "
                     f"chosen; name one after a colon, e.g. '{path}:{settings[0]}'")
  config = module.get_config(arg) if takes_arg else module.get_config()
  from metajax.train.rl import RLConfig  # meta-RL runs (metajax.train.rl)

  if isinstance(config, RLConfig):
    return apply_overrides(config, overrides).validated()
  if not isinstance(config, Config | SinusoidConfig):
    raise TypeError(f"{path}: get_config() must return metajax.train.Config, got "
                    f"{type(config).__name__}")
  return validate(apply_overrides(config, overrides))


def apply_overrides(config: Config | SinusoidConfig, overrides: Sequence[str]
                    ) -> Config | SinusoidConfig:
  """Applies ``key=value`` (and ``dict_field.entry=value``) overrides, coercing types.

  Args:
    config: the config to start from (not modified).
    overrides: strings ``key=value``; ``value`` is a Python literal (a bare word is a string;
      ``true``/``false``/``none``/``null`` are ``True``/``False``/``None`` as well as the
      Python spellings), coerced to the field's type. ``dict_field.entry=value`` sets one
      entry of a dictionary field such as ``algorithm_kwargs``.

  Returns:
    A new config of the same class with the overrides applied (not yet validated; see
    :func:`validate`).

  Raises:
    ValueError: naming the key, for unknown keys, missing ``=`` or values of the wrong type.

  Example:
    >>> config = apply_overrides(Config(), ["meta_steps=2000", "algorithm_kwargs.inner_lr=0.1"])
    >>> config.meta_steps, config.algorithm_kwargs
    (2000, {'inner_lr': 0.1})
  """
  changes: dict[str, Any] = {}
  hints = typing.get_type_hints(type(config))
  for item in overrides:
    if "=" not in item:
      raise ValueError(f"override {item!r} must look like key=value (e.g. meta_steps=1000)")
    key, text = item.split("=", 1)
    key = key.strip()
    top, _, entry = key.partition(".")
    if top not in hints:
      raise ValueError(f"unknown config key {top!r} in override {item!r}; known keys: "
                       f"{sorted(hints)}")
    if entry:
      if hints[top] is not dict:
        raise ValueError(f"{top!r} is not a dictionary field; write {top}=value")
      current = dict(changes.get(top, getattr(config, top)))
      current[entry] = _literal(text)
      changes[top] = current
    else:
      changes[top] = _coerce(key, _literal(text), hints[top])
  return config.replace(**changes)


# The lower-case words that JSON, YAML and shells users write for Python's True/False/None.
_WORDS = {"true": True, "false": False, "null": None, "none": None}


def _literal(text: str) -> Any:
  text = text.strip()
  if text in _WORDS:
    return _WORDS[text]
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word is a string: algorithm=fomaml


def _coerce(key: str, value: Any, hint: Any) -> Any:
  options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
  if value is None and type(None) in options:
    return None
  for kind in options:
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
      return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
      return value
    if kind is int and isinstance(value, float) and value.is_integer():
      return int(value)
    if kind is str:
      return str(value)
    if kind in (bool, dict) and isinstance(value, kind):
      return value
    if typing.get_origin(kind) is tuple:
      items = value if isinstance(value, tuple | list) else (value,)
      if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return tuple(items)
  names = " or ".join(getattr(k, "__name__", str(k)) for k in options)
  raise ValueError(f"config key {key!r} must be {names}, got {value!r}")


def _check_int(config: Config, key: str, minimum: int, allow_none: bool = False) -> None:
  value = getattr(config, key)
  if value is None and allow_none:
    return
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"config key {key!r} must be an integer >= {minimum}, got {value!r}")


def validate(config: Config | SinusoidConfig) -> Config | SinusoidConfig:
  """Checks a config without loading data or compiling anything.

  Checks types and ranges, that the algorithm, model, dataset, optimizer and split names exist,
  that the algorithm and model accept their keyword arguments, that ways do not exceed the
  classes of a split and shots + queries the images of a class.

  Args:
    config: a :class:`Config` or :class:`SinusoidConfig`.

  Returns:
    ``config`` unchanged.

  Raises:
    ValueError: with a message naming the offending key.

  Example:
    >>> validate(Config(ways=5)).ways
    5
    >>> validate(Config(ways=2000))
    Traceback (most recent call last):
    ...
    ValueError: config key 'test_ways (or ways)' is 2000 but the omniglot split 'val' has only ...
  """
  from metajax.train import registry

  if isinstance(config, SinusoidConfig):
    for key in ("meta_steps", "meta_batch", "inner_steps", "test_tasks"):
      _check_int(config, key, 1)
    shots = config.shots
    if (not isinstance(shots, tuple) or not shots
        or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in shots)):
      raise ValueError(f"config key 'shots' must be a non-empty tuple of integers >= 1 (one "
                       f"model per K), got {shots!r}; e.g. shots=(5,10) or shots=10")
    for key in ("inner_lr", "learning_rate"):
      if not getattr(config, key) > 0:
        raise ValueError(f"config key {key!r} must be > 0, got {getattr(config, key)!r}")
    return config
  for key in ("meta_steps", "eval_every", "eval_episodes", "test_episodes", "eval_batch",
              "ways", "shots", "meta_batch", "log_every", "keep_checkpoints",
              "adaptation_episodes"):
    _check_int(config, key, 1)
  for key in ("queries", "adaptation_steps", "seed"):
    _check_int(config, key, 0)
  _check_int(config, "test_ways", 1, allow_none=True)
  _check_int(config, "test_shots", 1, allow_none=True)
  _check_int(config, "test_queries", 1, allow_none=True)
  _check_int(config, "test_inner_steps", 0, allow_none=True)
  if config.queries < 1:
    raise ValueError(f"config key 'queries' must be at least 1 (the query set gives the loss), "
                     f"got {config.queries}")
  for key in ("ways", "test_ways"):
    if getattr(config, key) is not None and getattr(config, key) < 2:
      raise ValueError(f"config key {key!r} must be at least 2, got {getattr(config, key)}: a "
                       "1-way episode is not a classification task (its loss is 0 and accuracy "
                       f"100% whatever the model); set {key}=2 or more")
  every = config.checkpoint_every_minutes
  if every is not None and (isinstance(every, bool) or not isinstance(every, float | int)
                            or not every > 0):
    raise ValueError(f"config key 'checkpoint_every_minutes' must be > 0 or None (checkpoint "
                     f"only every eval_every steps), got {every!r}; e.g. 5")
  if not (isinstance(config.learning_rate, float | int) and config.learning_rate > 0):
    raise ValueError(f"config key 'learning_rate' must be > 0, got {config.learning_rate!r}")
  budget = config.time_budget_minutes
  if budget is not None and not (isinstance(budget, float | int) and budget > 0):
    raise ValueError(f"config key 'time_budget_minutes' must be > 0 or None, got {budget!r}")
  for key in ("algorithm_kwargs", "model_kwargs", "dataset_kwargs", "optimizer_kwargs"):
    if not isinstance(getattr(config, key), dict):
      raise ValueError(f"config key {key!r} must be a dict, got {getattr(config, key)!r}")
  if not config.run_dir:
    raise ValueError("config key 'run_dir' must name a folder")
  from metajax.train import distributed

  distributed.check_layout_keys(config.devices, config.mesh)
  registry.check(config)
  return config
