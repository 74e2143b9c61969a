"""Prototypical Networks: classify by distance to class-mean embeddings."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from metajax.algorithms import _metric
from metajax.core._checks import check_positive
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array

DISTANCES = ("squared_euclidean", "cosine")


class Prototypes(NamedTuple):
  """ProtoNet's task-specific state.

  Attributes:
    means: ``[ways, d]`` class-mean embeddings (zeros for absent classes).
    counts: ``[ways]`` support examples per class.
  """

  means: Array
  counts: Array


def protonet(
    embedding: Model,
    *,
    distance: str = "squared_euclidean",
    ways: int | None = None,
    batch_norm: str = "transductive",
    init_scale: float = 10.0,
) -> MetaLearner:
  """Prototypical Networks: logits are negative distances to the class means of the support set.

  Embeddings are flattened to ``[n, d]``. With ``distance="squared_euclidean"`` the logit of
  class ``c`` is ``-||f(x) - mean_c||^2`` (Snell et al.); with ``"cosine"`` it is
  ``scale * cos(f(x), mean_c)`` with a learned ``scale`` (meta-parameter, init ``init_scale``).

  Args:
    embedding: the embedding network, e.g. ``metajax.models.conv4_model(None, key)``.
    distance: ``"squared_euclidean"`` or ``"cosine"``.
    ways: static class width; ``None`` uses the support size (absent classes are masked), so
      any N-way task works. ``adapt``/``evaluate`` take ``ways=`` to override it.
    batch_norm: ``"transductive"`` (episode batch statistics) or ``"frozen"``; see
      ``metajax.algorithms._metric``.
    init_scale: initial logit scale for the cosine distance.

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding": params}`` (plus
    ``"scale"`` for cosine); ``adapt`` returns :class:`Prototypes`.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> learner = protonet(embedding)
    >>> sorted(learner.init())
    ['embedding']

  References:
    Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    https://arxiv.org/abs/1703.05175
  """
  if distance not in DISTANCES:
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
  cosine = distance == "cosine"
  init_scale = check_positive(init_scale, "init_scale")

  def init_extra():
    return {"scale": jnp.asarray(init_scale, jnp.float32)} if cosine else {}

  def fit(meta_params, features, labels, ways):
    del meta_params
    return Prototypes(_metric.class_means(features, labels, ways),
                      _metric.class_counts(labels, ways))

  def score(meta_params, prototypes, features):
    if cosine:
      logits = meta_params["scale"] * cosine_similarity(features, prototypes.means)
    else:
      logits = -squared_distances(features, prototypes.means)
    return _metric.mask_absent(logits, prototypes.counts)

  return _metric.build(embedding, name="protonet", ways=ways, batch_norm=batch_norm,
                       flatten=True, init_extra=init_extra, fit=fit, score=score, masks=True)


def squared_distances(x: Array, y: Array) -> Array:
  """``[n, m]`` squared Euclidean distances between rows of ``x [n, d]`` and ``y [m, d]``."""
  return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def cosine_similarity(x: Array, y: Array, eps: float = 1e-8) -> Array:
  """``[n, m]`` cosine similarities between rows of ``x [n, d]`` and ``y [m, d]``."""
  x = x * jnp.reciprocal(jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps))
  y = y * jnp.reciprocal(jnp.sqrt(jnp.sum(y * y, axis=-1, keepdims=True) + eps))
  return x @ y.T
