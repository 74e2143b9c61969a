"""Names a config may use, and how each becomes a learner, an optimizer or a dataset split."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import optax

from metajax import algorithms, models
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner
from metajax.data import ClassDataset


class AlgorithmSpec(NamedTuple):
  """How to build an algorithm: its factory and whether the model is a classifier.

  Attributes:
    factory: ``factory(model, **kwargs) -> MetaLearner``.
    gradient_based: the model has a ``ways``-way head adapted by gradient steps (else it is an
      embedding network and any number of ways works at test time).
    needs_context: the factory also takes ``key=`` (for networks of its own) and
      ``input_shape=`` (of one image), which the trainer supplies.
  """

  factory: Callable[..., MetaLearner]
  gradient_based: bool
  needs_context: bool = False


def embedding_shape(embedding: Model, input_shape: tuple[int, ...]) -> tuple[int, ...]:
  """Shape of one example's embedding (no computation: ``jax.eval_shape``)."""
  x = jax.ShapeDtypeStruct((2, *input_shape), jax.numpy.float32)
  out = jax.eval_shape(lambda x: embedding.apply(embedding.params, embedding.state, x,
                                                 train=True)[0], x)
  return tuple(out.shape[1:])


def relation_net_from_embedding(
    embedding: Model, *, key: jax.Array, input_shape: tuple[int, ...],
    relation_filters: int = 64, relation_hidden: int = 8, ways: int | None = None,
    batch_norm: str = "transductive") -> MetaLearner:
  """:func:`metajax.relation_net` with a relation module sized to the embedding's feature maps.

  The embedding must keep its feature maps (``model_kwargs``: ``flatten=False``; Sung et al. use
  ``pooled_blocks=2``); the module has ``relation_filters`` channels and ``relation_hidden``
  hidden units (64 and 8 in the paper).
  """
  feature_shape = embedding_shape(embedding, input_shape)
  if len(feature_shape) != 3:
    raise ValueError(
        f"relation_net needs the embedding's feature maps (h, w, c), got embeddings of shape "
        f"{feature_shape}; set model_kwargs.flatten=False")
  module = algorithms.relation_module_model(feature_shape, key, filters=relation_filters,
                                            hidden=relation_hidden)
  return algorithms.relation_net(embedding, module, ways=ways, batch_norm=batch_norm,
                                split_pairs=True)


def siamese_from_embedding(
    embedding: Model, *, key: jax.Array, input_shape: tuple[int, ...],
    ways: int | None = None, batch_norm: str = "transductive") -> MetaLearner:
  """:func:`metajax.siamese` with ``features`` read off the embedding's output size."""
  del key
  features = math.prod(embedding_shape(embedding, input_shape))
  return algorithms.siamese(embedding, features=features, ways=ways, batch_norm=batch_norm)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "maml": AlgorithmSpec(algorithms.maml, True),
    "fomaml": AlgorithmSpec(algorithms.fomaml, True),
    "anil": AlgorithmSpec(algorithms.anil, True),
    "meta_sgd": AlgorithmSpec(algorithms.meta_sgd, True),
    "maml_plus_plus": AlgorithmSpec(algorithms.maml_plus_plus, True),
    "reptile": AlgorithmSpec(algorithms.reptile, True),
    "protonet": AlgorithmSpec(algorithms.protonet, False),
    "matching_net": AlgorithmSpec(algorithms.matching_net, False),
    "relation_net": AlgorithmSpec(relation_net_from_embedding, False, needs_context=True),
    "siamese": AlgorithmSpec(siamese_from_embedding, False, needs_context=True),
    "r2d2": AlgorithmSpec(algorithms.r2d2, False),
}

MODELS: dict[str, Callable] = {
    "conv4": models.conv4_model,
    "resnet12": models.resnet12_model,
}

OPTIMIZERS = ("adam", "sgd", "reptile")


class DatasetSpec(NamedTuple):
  """A dataset's loader, split sizes (classes), images per class and image shape."""

  loader: Callable[..., ClassDataset]
  split_classes: dict[str, int]
  images_per_class: int
  image_shape: Callable[[dict], tuple[int, int, int]]


def _omniglot_loader(split: str, **kwargs) -> ClassDataset:
  from metajax.data import load_omniglot

  return load_omniglot(split, **kwargs)


def _tiny_imagenet_loader(split: str, **kwargs) -> ClassDataset:
  from metajax.data import load_tiny_imagenet

  return load_tiny_imagenet(split, **kwargs)


DATASETS: dict[str, DatasetSpec] = {
    "omniglot": DatasetSpec(
        _omniglot_loader,
        {"train": 4112, "val": 688, "test": 1692, "trainval": 4800, "background": 964,
         "evaluation": 659},
        20, lambda kw: (kw.get("image_size", 28), kw.get("image_size", 28), 1)),
    "tiny_imagenet": DatasetSpec(
        _tiny_imagenet_loader, {"train": 120, "val": 40, "test": 40},
        # The train100 archive holds 100 images per class (the full one 500).
        100, lambda kw: (64, 64, 3)),
}


def _check_kwargs(factory: Callable, kwargs: dict, key: str, reserved: tuple[str, ...]) -> None:
  params = inspect.signature(factory).parameters
  open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
  for name in kwargs:
    if name in reserved:
      raise ValueError(f"config key '{key}.{name}' is set by the trainer; remove it")
    if not open_ended and name not in params:
      known = [p for p in params if p not in ("model", "embedding", "key", "outputs", *reserved)]
      raise ValueError(f"config key '{key}.{name}' is not an argument of {factory.__name__}(); "
                       f"known: {known}")


def check(config) -> None:
  """Checks the names and sizes in ``config`` (see :func:`metajax.train.config.validate`)."""
  if config.algorithm not in ALGORITHMS:
    raise ValueError(f"config key 'algorithm' is {config.algorithm!r}, not one of "
                     f"{sorted(ALGORITHMS)}")
  if config.model not in MODELS:
    raise ValueError(f"config key 'model' is {config.model!r}, not one of {sorted(MODELS)}")
  if config.dataset not in DATASETS:
    raise ValueError(f"config key 'dataset' is {config.dataset!r}, not one of {sorted(DATASETS)}")
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"config key 'optimizer' is {config.optimizer!r}, not one of {OPTIMIZERS}")
  try:
    build_optimizer(config)
  except TypeError as error:
    raise ValueError(f"config key 'optimizer_kwargs' is {config.optimizer_kwargs!r}, which "
                     f"{config.optimizer} does not accept: {error}") from None
  spec = ALGORITHMS[config.algorithm]
  _check_kwargs(spec.factory, config.algorithm_kwargs, "algorithm_kwargs",
                ("ways", "key", "input_shape") if spec.needs_context else ("ways",))
  _check_kwargs(MODELS[config.model], config.model_kwargs, "model_kwargs",
                ("outputs", "key", "input_shape"))
  if config.algorithm == "anil":
    _check_kwargs(algorithms.maml, {k: v for k, v in config.algorithm_kwargs.items()
                                    if k != "head"}, "algorithm_kwargs", ("ways",))
  for name in ("steps", "eval_steps"):
    value = config.algorithm_kwargs.get(name)
    if value is not None and (not isinstance(value, int) or value < (1 if name == "steps" else 0)):
      raise ValueError(f"config key 'algorithm_kwargs.{name}' must be a positive integer, got "
                       f"{value!r}")
  if spec.gradient_based and config.eval_ways != config.ways:
    raise ValueError(
        f"config key 'test_ways' is {config.test_ways} but {config.algorithm} has a "
        f"{config.ways}-way head; gradient-based learners test with the training ways "
        "(set test_ways=None)")
  dataset = DATASETS[config.dataset]
  for key, split, ways, shots, queries in (
      ("train_split", config.train_split, config.ways, config.shots, config.queries),
      ("val_split", config.val_split, config.eval_ways, config.eval_shots, config.eval_queries),
      ("test_split", config.test_split, config.eval_ways, config.eval_shots, config.eval_queries)):
    if split not in dataset.split_classes:
      raise ValueError(f"config key '{key}' is {split!r}, not a {config.dataset} split; use one "
                       f"of {sorted(dataset.split_classes)}")
    classes = dataset.split_classes[split]
    ways_key = "ways" if key == "train_split" else "test_ways (or ways)"
    if ways > classes:
      raise ValueError(f"config key '{ways_key}' is {ways} but the {config.dataset} split "
                       f"{split!r} has only {classes} classes; lower ways or use another split")
    if shots + queries > dataset.images_per_class:
      raise ValueError(
          f"config keys 'shots' + 'queries' ({shots} + {queries}) exceed the "
          f"{dataset.images_per_class} images per class of {config.dataset} split {split!r}")


def image_shape(config) -> tuple[int, int, int]:
  return DATASETS[config.dataset].image_shape(config.dataset_kwargs)


def build_learner(config, key: jax.Array, *, ways: int | None = None) -> MetaLearner:
  """The config's algorithm over its model, initialised from ``key``.

  Args:
    config: the experiment.
    key: the initialisation key; the same key gives the same parameters whatever ``ways`` is.
    ways: the number of classes of the episodes the learner will see (default: ``config.ways``).
      Metric learners take it as their static class width; without it the width is the support
      size, so K-shot episodes would carry K times as many (empty) class columns, which costs a
      Relation Network K times the relation-module work. Gradient-based learners ignore it.

  Returns:
    The :class:`metajax.MetaLearner`.
  """
  spec = ALGORITHMS[config.algorithm]
  outputs = config.ways if spec.gradient_based else None
  model = MODELS[config.model](outputs, key, input_shape=image_shape(config),
                               **config.model_kwargs)
  kwargs = dict(config.algorithm_kwargs)
  if not spec.gradient_based:
    kwargs["ways"] = ways or config.ways
  if spec.needs_context:
    return spec.factory(model, key=jax.random.fold_in(key, 1), input_shape=image_shape(config),
                        **kwargs)
  return spec.factory(model, **kwargs)


def build_optimizer(config) -> optax.GradientTransformation:
  """The outer optimizer and its learning-rate schedule.

  ``optimizer_kwargs`` may set the schedule of Adam and SGD: ``decay_every`` (with
  ``decay_factor``, default 0.5) multiplies the rate by the factor every that many steps (as
  Snell et al. halve it every 2,000 episodes); ``schedule="cosine"`` (with
  ``min_learning_rate``, default 0) anneals it over ``meta_steps`` along a half cosine (as
  MAML++ does). The remaining keys go to the optimizer.
  """
  kwargs = dict(config.optimizer_kwargs)
  rate = config.learning_rate
  decay_every, decay_factor = kwargs.pop("decay_every", None), kwargs.pop("decay_factor", 0.5)
  schedule = kwargs.pop("schedule", "constant")
  min_rate = kwargs.pop("min_learning_rate", 0.0)
  if schedule not in ("constant", "cosine"):
    raise ValueError(f"config key 'optimizer_kwargs.schedule' must be 'constant' or 'cosine', "
                     f"got {schedule!r} (use decay_every=N for step decay)")
  if schedule == "cosine" and decay_every:
    raise ValueError("config key 'optimizer_kwargs' sets both schedule='cosine' and "
                     f"decay_every={decay_every}; choose one learning-rate schedule")
  if "decay_factor" in config.optimizer_kwargs and not decay_every:
    raise ValueError(f"config key 'optimizer_kwargs.decay_factor'={decay_factor} has no effect "
                     "without decay_every; set optimizer_kwargs.decay_every=N (steps between "
                     "decays) or drop decay_factor")
  if decay_every is not None and (not isinstance(decay_every, int) or decay_every <= 0):
    raise ValueError("config key 'optimizer_kwargs.decay_every' must be a positive number of "
                     f"steps, got {decay_every!r}")
  if not 0 < decay_factor <= 1:
    raise ValueError("config key 'optimizer_kwargs.decay_factor' must be in (0, 1], got "
                     f"{decay_factor!r}")
  if "min_learning_rate" in config.optimizer_kwargs and schedule != "cosine":
    raise ValueError(f"config key 'optimizer_kwargs.min_learning_rate'={min_rate} has no effect "
                     "without schedule='cosine'; set optimizer_kwargs.schedule=cosine or drop "
                     "min_learning_rate")
  if not 0 <= min_rate <= config.learning_rate:
    raise ValueError("config key 'optimizer_kwargs.min_learning_rate' must be between 0 and "
                     f"learning_rate={config.learning_rate}, got {min_rate!r}")
  if config.optimizer == "reptile" and (decay_every or schedule != "constant"):
    raise ValueError("config key 'optimizer_kwargs' sets a learning-rate schedule, but the "
                     "reptile optimizer anneals its step size itself (use anneal_steps=N)")
  if decay_every:
    rate = optax.exponential_decay(rate, decay_every, decay_factor, staircase=True)
  elif schedule == "cosine":
    rate = optax.cosine_decay_schedule(rate, config.meta_steps,
                                       alpha=min_rate / config.learning_rate)
  if config.optimizer == "adam":
    return optax.adam(rate, **kwargs)
  if config.optimizer == "sgd":
    return optax.sgd(rate, **kwargs)
  return algorithms.reptile_outer_optimizer(config.learning_rate, **kwargs)


def load_split(config, split: str) -> ClassDataset:
  """Loads one split of the config's dataset."""
  return DATASETS[config.dataset].loader(split, **config.dataset_kwargs)
