"""Names a config may use, and how each becomes a learner, an optimizer or a dataset split."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import optax

from metajax import algorithms, models
from metajax.algorithms.snail import PAPER_ATTENTION
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner
from metajax.data import ClassDataset, episode_sampler


class AlgorithmSpec(NamedTuple):
  """How to build an algorithm: its factory and whether the model is a classifier.

  Attributes:
    factory: ``factory(model, **kwargs) -> MetaLearner``.
    gradient_based: the model has a ``ways``-way head adapted by gradient steps (else it is an
      embedding network and any number of ways works at test time).
    needs_context: the factory also takes ``key=`` (for networks of its own) and
      ``input_shape=`` (of one image), which the trainer supplies.
    supervised: the learner trains on minibatches of the training split labelled by their
      global class (:func:`metajax.data.batch_sampler`), not on episodes; the factory also takes
      ``classes=`` (of the training split), which the trainer supplies.
    context_inputs: the factory argument (CAVIA's ``context_dim``) giving how many channels the
      learner concatenates to each image, which the trainer adds to the model's input shape.
  """

  factory: Callable[..., MetaLearner]
  gradient_based: bool
  needs_context: bool = False
  supervised: bool = False
  context_inputs: str | None = None


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


def pretrain_from_embedding(
    embedding: Model, *, key: jax.Array, input_shape: tuple[int, ...], classes: int,
    evaluator: str = "linear_probe", evaluator_kwargs: dict | None = None,
    classifier: str = "linear", scale: float = 10.0, ways: int | None = None,
    batch_norm: str = "transductive") -> MetaLearner:
  """:func:`metajax.pretrain` with ``features`` read off the embedding's output size.

  Training minibatches hold ``ways`` classes of the training split with ``shots + queries``
  images each (labelled by global class); validation and test episodes are scored by
  ``evaluator`` (``"linear_probe"``, ``"baseline"``, ``"baseline_plus_plus"`` or
  ``"nearest_centroid"``) with ``evaluator_kwargs``.
  """
  del key
  features = math.prod(embedding_shape(embedding, input_shape))
  return algorithms.pretrain(embedding, classes=classes, features=features, evaluator=evaluator,
                             evaluator_kwargs=evaluator_kwargs, classifier=classifier,
                             scale=scale, ways=ways, batch_norm=batch_norm)


def hypernetwork_from_embedding(
    embedding: Model, *, key: jax.Array, input_shape: tuple[int, ...], ways: int,
    hidden: int = 256, use_film: bool = False, finetune_steps: int = 0, inner_lr: float = 0.1,
    init_scale: float = 2.0, batch_norm: str = "transductive") -> MetaLearner:
  """:func:`metajax.hypernetwork` with ``features`` read off the embedding's output size."""
  return algorithms.hypernetwork(
      embedding, ways=ways, features=math.prod(embedding_shape(embedding, input_shape)),
      hidden=hidden, use_film=use_film, finetune_steps=finetune_steps, inner_lr=inner_lr,
      init_scale=init_scale, batch_norm=batch_norm, key=key)


def versa_from_embedding(
    embedding: Model, *, key: jax.Array, input_shape: tuple[int, ...], ways: int,
    samples: int = 10, test_samples: int = 100, hidden: int = 256,
    init_log_variance: float = -6.0, init_scale: float = 2.0,
    batch_norm: str = "transductive") -> MetaLearner:
  """:func:`metajax.versa` with ``features`` read off the embedding's output size."""
  return algorithms.versa(
      embedding, ways=ways, features=math.prod(embedding_shape(embedding, input_shape)),
      samples=samples, test_samples=test_samples, hidden=hidden,
      init_log_variance=init_log_variance, init_scale=init_scale, batch_norm=batch_norm, key=key)


def snail_from_embedding(
    embedding: Model, *, key: jax.Array, input_shape: tuple[int, ...], ways: int,
    shots: int = 1, filters: int = 128, attention: tuple = PAPER_ATTENTION,
    shuffle: bool = True, batch_norm: str = "transductive") -> MetaLearner:
  """:func:`metajax.snail` with ``features`` read off the embedding's output size.

  SNAIL's label inputs and outputs are ``ways`` wide, so it tests with the training ways.
  """
  return algorithms.snail(
      embedding, ways=ways, features=math.prod(embedding_shape(embedding, input_shape)),
      shots=shots, filters=filters, attention=tuple(map(tuple, attention)), shuffle=shuffle,
      batch_norm=batch_norm, key=key)


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
    "pretrain": AlgorithmSpec(pretrain_from_embedding, False, needs_context=True,
                              supervised=True),
    "r2d2": AlgorithmSpec(algorithms.r2d2, False),
    "imaml": AlgorithmSpec(algorithms.imaml, True),
    "cavia": AlgorithmSpec(algorithms.cavia, True, context_inputs="context_dim"),
    "metaoptnet": AlgorithmSpec(algorithms.metaoptnet, False),
    "hypernetwork": AlgorithmSpec(hypernetwork_from_embedding, False, needs_context=True),
    "versa": AlgorithmSpec(versa_from_embedding, False, needs_context=True),
    "snail": AlgorithmSpec(snail_from_embedding, False, needs_context=True),
}

MODELS: dict[str, Callable] = {
    "conv4": models.conv4_model,
    "resnet12": models.resnet12_model,
}

# Models of their own for a learner with context inputs (CAVIA): they take the image shape and
# ``context_dim`` and choose how the context enters (``model_kwargs.conditioning``).
CONTEXT_MODELS: dict[str, Callable] = {
    "conv4": algorithms.cavia_conv4_model,
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


def _mini_imagenet_loader(split: str, **kwargs) -> ClassDataset:
  from metajax.data import load_mini_imagenet

  return load_mini_imagenet(split, **kwargs)


def _cifar_fs_loader(split: str, **kwargs) -> ClassDataset:
  from metajax.data import load_cifar_fs

  return load_cifar_fs(split, **kwargs)


META_DATASET_SOURCES = ("omniglot", "tiny_imagenet")


def _meta_dataset_loader(split: str, *, sources=META_DATASET_SOURCES, image_size: int = 28,
                         probabilities: dict | None = None, **kwargs) -> ClassDataset:
  """Several sources' ``split`` resized to ``image_size`` RGB, classes named ``source:class``.

  ``split`` may name one source, ``"test:omniglot"``, to test per source. ``probabilities``
  (``{source: weight}``) is the training sampler's, see :func:`train_sampler`.
  """
  from metajax.data import meta_dataset

  del probabilities
  split, _, only = split.partition(":")
  if only and only not in sources:
    raise ValueError(f"split {split}:{only} names a source that is not one of {list(sources)}")
  chosen = [only] if only else list(sources)
  unknown = [s for s in chosen if s not in DATASETS or s == "meta_dataset"]
  if unknown:
    raise ValueError(f"meta_dataset sources {unknown} are not datasets; use some of "
                     f"{sorted(set(DATASETS) - {'meta_dataset'})}")
  parts = {s: meta_dataset.resize_dataset(DATASETS[s].loader(split, **kwargs),
                                          (image_size, image_size, 3)) for s in chosen}
  return meta_dataset.merge_sources(parts, name=f"meta_dataset/{split}")


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
    # Ravi & Larochelle split; the images are not in ../shared/data (the loader says where).
    "mini_imagenet": DatasetSpec(
        _mini_imagenet_loader, {"train": 64, "val": 16, "test": 20}, 600,
        lambda kw: (kw.get("image_size", 84), kw.get("image_size", 84), 3)),
    "cifar_fs": DatasetSpec(
        _cifar_fs_loader, {"train": 64, "val": 16, "test": 20}, 600, lambda kw: (32, 32, 3)),
    # Meta-Dataset protocol over several sources (training: one source per batch, variable
    # ways and shots); class counts of the default sources, Omniglot + Tiny-ImageNet.
    "meta_dataset": DatasetSpec(
        _meta_dataset_loader, {"train": 4112 + 120, "val": 688 + 40, "test": 1692 + 40}, 20,
        lambda kw: (kw.get("image_size", 28), kw.get("image_size", 28), 3)),
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
    default = params[name].default if name in params else inspect.Parameter.empty
    _check_like_default(f"{key}.{name}", kwargs[name], default)


def _is_number(value) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def _check_like_default(key: str, value, default) -> None:
  """A value where the factory's default is a number (or a flag) must be one too."""
  if isinstance(default, bool) and not isinstance(value, bool):
    raise ValueError(f"config key '{key}' must be True or False (default {default}), got "
                     f"{value!r}")
  if _is_number(default) and isinstance(value, str | bytes | dict | bool | type(None)):
    raise ValueError(f"config key '{key}' must be a number like its default {default!r}, got "
                     f"{value!r}; e.g. {key}={default!r}")


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
  if spec.supervised:
    _check_kwargs(spec.factory, config.algorithm_kwargs, "algorithm_kwargs", ("classes",))
    from metajax.algorithms.transfer import EVALUATORS

    name = config.algorithm_kwargs.get("evaluator", "linear_probe")
    if name not in EVALUATORS:
      raise ValueError(f"config key 'algorithm_kwargs.evaluator' is {name!r}, not one of "
                       f"{sorted(EVALUATORS)}")
    _check_kwargs(EVALUATORS[name], config.algorithm_kwargs.get("evaluator_kwargs") or {},
                  "algorithm_kwargs.evaluator_kwargs", ("ways", "batch_norm"))
  model_factory, reserved = MODELS[config.model], ("outputs", "key", "input_shape")
  if spec.context_inputs:
    if spec.context_inputs not in config.algorithm_kwargs:
      raise ValueError(f"config key 'algorithm_kwargs.{spec.context_inputs}' is required by "
                       f"{config.algorithm}; e.g. {spec.context_inputs}=100")
    if config.model in CONTEXT_MODELS:
      model_factory, reserved = CONTEXT_MODELS[config.model], (*reserved, spec.context_inputs)
  _check_kwargs(model_factory, config.model_kwargs, "model_kwargs", reserved)
  try:  # the model's own argument checks, on shapes only (nothing is computed)
    jax.eval_shape(lambda key: build_model(
        config, config.ways if spec.gradient_based else None, key).params, jax.random.key(0))
  except (ValueError, TypeError) as error:
    raise ValueError(f"config key 'model_kwargs' is {config.model_kwargs!r}, which "
                     f"{config.model} does not accept: {error}") from None
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
  if config.algorithm == "snail" and config.eval_ways != config.ways:
    raise ValueError(
        f"config key 'test_ways' is {config.test_ways} but snail's label inputs and outputs are "
        f"{config.ways} wide; snail tests with the training ways (set test_ways=None)")
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


def build_model(config, outputs: int | None, key: jax.Array) -> Model:
  """The config's network with ``outputs`` logits (``None``: an embedding network).

  A learner with context inputs (CAVIA) concatenates ``algorithm_kwargs.context_dim`` channels
  to every image: ``model="conv4"`` is then :func:`metajax.algorithms.cavia_conv4_model`
  (``model_kwargs.conditioning``: ``"concat"`` or ``"film"``), any other model gets the wider
  input shape.
  """
  spec = ALGORITHMS[config.algorithm]
  input_shape = image_shape(config)
  if spec.context_inputs:
    extra = config.algorithm_kwargs.get(spec.context_inputs, 0)
    if config.model in CONTEXT_MODELS:
      return CONTEXT_MODELS[config.model](outputs, key, input_shape=input_shape,
                                          context_dim=extra, **config.model_kwargs)
    input_shape = (*input_shape[:-1], input_shape[-1] + extra)
  return MODELS[config.model](outputs, key, input_shape=input_shape, **config.model_kwargs)


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
  model = build_model(config, config.ways if spec.gradient_based else None, key)
  kwargs = dict(config.algorithm_kwargs)
  if not spec.gradient_based:
    kwargs["ways"] = ways or config.ways
  if spec.supervised:
    kwargs["classes"] = DATASETS[config.dataset].split_classes[config.train_split]
  if spec.needs_context:
    kwargs.update(key=jax.random.fold_in(key, 1), input_shape=image_shape(config))
  try:
    return spec.factory(model, **kwargs)
  except (ValueError, TypeError) as error:  # the factory's own checks (inner_lr > 0, ...)
    raise ValueError(f"config key 'algorithm_kwargs' is {config.algorithm_kwargs!r}, which "
                     f"{config.algorithm} does not accept: {error}") from error


def train_sampler(config, dataset: ClassDataset):
  """The sampler of training batches: ``meta_batch`` episodes of ``ways``-way ``shots``-shot
  ``queries``-query, or for a supervised learner (pretraining) ``meta_batch`` minibatches of
  ``ways`` classes with ``shots + queries`` images each, labelled by global class."""
  if ALGORITHMS[config.algorithm].supervised:
    from metajax.data.batch_sampler import batch_sampler

    if dataset.num_classes != DATASETS[config.dataset].split_classes[config.train_split]:
      raise ValueError(
          f"the {config.dataset} split {config.train_split!r} holds {dataset.num_classes} "
          f"classes, not the {DATASETS[config.dataset].split_classes[config.train_split]} the "
          "registry lists; the pretraining classifier needs one output per class")
    return batch_sampler(dataset, classes=config.ways, shots=config.shots,
                         queries=config.queries, batch_size=config.meta_batch)
  if config.dataset == "meta_dataset":
    from metajax.data import meta_dataset

    per_source = meta_dataset.split_sources(dataset)
    return meta_dataset.multi_source_sampler(
        {s: meta_dataset.meta_dataset_sampler(d, batch_size=config.meta_batch)
         for s, d in per_source.items()}, config.dataset_kwargs.get("probabilities"))
  return episode_sampler(dataset, ways=config.ways, shots=config.shots, queries=config.queries,
                         batch_size=config.meta_batch)


def evaluator_kwargs_for_run(config, name: str, kwargs: dict | None = None) -> dict:
  """The keyword arguments of evaluator ``name`` on a run: ``kwargs``, checked.

  ``None`` means the run's own: a pretraining run's ``algorithm_kwargs.evaluator_kwargs`` when
  ``name`` is its ``evaluator``, else the evaluator's defaults.

  Raises:
    ValueError: ``name`` is not an evaluator, the run has no embedding to score (a
      gradient-based learner's), or a key of ``kwargs`` is not an argument of the evaluator or
      has the wrong type.
  """
  from metajax.algorithms.transfer import EVALUATORS

  if name not in EVALUATORS:
    raise ValueError(f"evaluator {name!r} is not one of {sorted(EVALUATORS)}")
  if ALGORITHMS[config.algorithm].gradient_based:
    raise ValueError(f"{config.algorithm} trains a classifier with a {config.ways}-way head, not "
                     "an embedding network; evaluators score runs of metric learners or "
                     "pretraining")
  if kwargs is None:
    own = (config.algorithm == "pretrain"
           and name == config.algorithm_kwargs.get("evaluator", "linear_probe"))
    kwargs = dict(config.algorithm_kwargs.get("evaluator_kwargs") or {}) if own else {}
  _check_kwargs(EVALUATORS[name], kwargs, "evaluator_kwargs", ("ways", "batch_norm"))
  return dict(kwargs)


def evaluator_for_run(config, name: str, params, key: jax.Array,
                      kwargs: dict | None = None) -> tuple[MetaLearner, object]:
  """A few-shot evaluator over the config's embedding network and the run's embedding weights.

  Args:
    config: the run's config.
    name: an evaluator of :data:`metajax.algorithms.transfer.EVALUATORS`.
    params: the run's meta-parameters; they must hold ``"embedding"``.
    key: initialisation key of the network (only its structure is used).
    kwargs: the evaluator's keyword arguments, e.g. ``{"l2": 0.1}`` for the linear probe
      (``None``: the run's own; see :func:`evaluator_kwargs_for_run`).

  Returns:
    ``(evaluator, evaluator_params)`` for :func:`metajax.evaluate_tasks`.
  """
  from metajax.algorithms.transfer import build_evaluator, embedding_params

  kwargs = evaluator_kwargs_for_run(config, name, kwargs)
  model = MODELS[config.model](None, key, input_shape=image_shape(config), **config.model_kwargs)
  learner = build_evaluator(name, model, ways=config.eval_ways, **kwargs)
  return learner, embedding_params(learner, params)


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
  if decay_every is not None and (not isinstance(decay_every, int) or isinstance(decay_every, bool)
                                  or decay_every <= 0):
    raise ValueError("config key 'optimizer_kwargs.decay_every' must be a positive number of "
                     f"steps, got {decay_every!r}; e.g. optimizer_kwargs.decay_every=2000")
  for name, value in (("decay_factor", decay_factor), ("min_learning_rate", min_rate)):
    if not _is_number(value):
      raise ValueError(f"config key 'optimizer_kwargs.{name}' must be a number, got {value!r}")
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
