"""R2D2: a differentiable closed-form ridge-regression head on top of a learned embedding."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from metajax.algorithms import _metric
from metajax.core._checks import check_positive
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array


class RidgeHead(NamedTuple):
  """R2D2's task-specific state.

  Attributes:
    weights: ``[d, ways]`` ridge-regression weights.
    counts: ``[ways]`` support examples per class.
  """

  weights: Array
  counts: Array


def ridge_weights(features: Array, targets: Array, regulariser: Array) -> Array:
  """``W = X^T (X X^T + lambda I)^{-1} Y``, the ridge solution through the Woodbury identity.

  Equal to the primal ``(X^T X + lambda I)^{-1} X^T Y`` but solves an ``n x n`` system, cheap
  when the support set is smaller than the embedding.

  Args:
    features: ``X``, ``[n, d]``.
    targets: ``Y``, ``[n, ways]``.
    regulariser: ``lambda > 0``.
  """
  n = features.shape[0]
  gram = features @ features.T + regulariser * jnp.eye(n, dtype=features.dtype)
  return features.T @ jnp.linalg.solve(gram, targets)


def r2d2(
    embedding: Model,
    *,
    ways: int | None = None,
    batch_norm: str = "transductive",
    init_lambda: float = 1.0,
    init_scale: float = 10.0,
) -> MetaLearner:
  """R2D2: per task, ridge regression from support embeddings to one-hot labels, in closed form.

  ``W = X^T (X X^T + lambda I)^{-1} Y`` (Woodbury; an ``n_support x n_support`` solve) and query
  logits ``scale * X_query W + bias``, where ``log lambda``, ``scale`` and ``bias`` are
  meta-learned with the embedding and back-propagated through the solve.

  Args:
    embedding: the embedding network (flattened outputs).
    ways: static class width, see :func:`metajax.protonet`.
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.
    init_lambda: initial ridge regulariser ``lambda``.
    init_scale: initial logit scale.

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding", "log_lambda", "scale",
    "bias"}``; ``adapt`` returns a :class:`RidgeHead`.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> sorted(r2d2(embedding).init())
    ['bias', 'embedding', 'log_lambda', 'scale']

  References:
    Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable closed-form
    solvers", ICLR 2019. https://arxiv.org/abs/1805.08136
  """
  init_lambda = check_positive(init_lambda, "init_lambda")
  init_scale = check_positive(init_scale, "init_scale")

  def init_extra():
    return {"log_lambda": jnp.log(jnp.asarray(init_lambda, jnp.float32)),
            "scale": jnp.asarray(init_scale, jnp.float32),
            "bias": jnp.zeros([], jnp.float32)}

  def fit(meta_params, features, labels, ways):
    targets = _metric.one_hot(labels, ways)
    weights = ridge_weights(features, targets, jnp.exp(meta_params["log_lambda"]))
    return RidgeHead(weights, targets.sum(axis=0))

  def score(meta_params, head, features):
    logits = meta_params["scale"] * (features @ head.weights) + meta_params["bias"]
    return _metric.mask_absent(logits, head.counts)

  return _metric.build(embedding, name="r2d2", ways=ways, batch_norm=batch_norm, flatten=True,
                       init_extra=init_extra, fit=fit, score=score, masks=True)
