"""Siamese Networks: a learned weighted L1 distance between twin embeddings."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import optax

from metajax.algorithms import _metric
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array, PyTree


class SiameseSupport(NamedTuple):
  """Siamese Network's task-specific state.

  Attributes:
    features: ``[n_support, d]`` support embeddings.
    one_hot: ``[n_support, ways]`` support labels.
  """

  features: Array
  one_hot: Array


def pair_logits(distance_params: PyTree, x: Array, y: Array) -> Array:
  """``[n, m]`` same-class logits ``sum_j alpha_j |x_j - y_j| + b`` for rows of ``x`` and ``y``.

  Symmetric in its two arguments (``pair_logits(p, x, y) == pair_logits(p, y, x).T``).

  Args:
    distance_params: ``{"weights": [d], "bias": []}``.
    x: ``[n, d]`` embeddings.
    y: ``[m, d]`` embeddings.
  """
  l1 = jnp.abs(x[:, None, :] - y[None, :, :])
  return l1 @ distance_params["weights"] + distance_params["bias"]


def siamese(
    embedding: Model,
    *,
    features: int,
    ways: int | None = None,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Siamese Networks: same/different verification, and N-way one-shot by the nearest example.

  The probability that two inputs share a class is ``sigmoid(sum_j alpha_j |f(x)_j - f(y)_j| +
  b)`` with learned ``alpha`` and ``b`` (Koch et al. 2015, Eq. 1). Training pairs are built
  inside ``task_loss`` from each episode: every (query, support) pair, labelled same/different,
  with binary cross-entropy averaged separately over same and different pairs (so both count
  equally although an N-way episode has N-1 times more different pairs). For classification a
  class's logit is the pair logit of its most similar support example (``predict`` gives
  ``[n_query, ways]``); ``evaluate`` reports that accuracy and the pair loss. For verification
  scores of arbitrary pairs use :func:`pair_logits` on embeddings, or ``predict(params,
  adapt(params, x1, arange(n1)), x2)``, which gives ``[n2, n1]`` pair logits; then
  :func:`verification_metrics`.

  Args:
    embedding: the embedding network (flattened outputs).
    features: embedding size ``d`` (the length of ``alpha``).
    ways: static class width, see :func:`metajax.protonet`.
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are
    ``{"embedding": params, "distance": {"weights": [d], "bias": []}}``. ``alpha`` starts at
    ``-1/d`` (far apart means different).

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> sorted(siamese(embedding, features=8).init())
    ['distance', 'embedding']

  References:
    Koch, Zemel & Salakhutdinov, "Siamese Neural Networks for One-shot Image Recognition",
    ICML Deep Learning Workshop 2015.
  """
  if isinstance(features, bool) or not isinstance(features, int) or features < 1:
    raise ValueError(f"features must be the embedding size (a positive int), got {features!r}.")

  def init_extra():
    return {"distance": {"weights": jnp.full((features,), -1.0 / features, jnp.float32),
                         "bias": jnp.zeros([], jnp.float32)}}

  def fit(meta_params, support_features, labels, ways):
    del meta_params
    return SiameseSupport(support_features, _metric.one_hot(labels, ways))

  def score(meta_params, support, query_features):
    pairs = pair_logits(meta_params["distance"], query_features, support.features)
    in_class = support.one_hot[None, :, :] > 0
    return jnp.max(jnp.where(in_class, pairs[:, :, None], _metric.ABSENT_LOGIT), axis=1)

  def objective(meta_params, episode):
    pairs = pair_logits(meta_params["distance"], episode.query_features,
                        episode.support_features)
    same = (episode.query_y[:, None] == episode.support_y[None, :]).astype(jnp.float32)
    losses = optax.sigmoid_binary_cross_entropy(pairs, same)
    # Pairs with a padded query or support example (label == ways) carry no weight.
    real = episode.query_mask[:, None] * (episode.support_y < episode.ways)[None, :]
    positive = jnp.sum(losses * same * real) / jnp.maximum((same * real).sum(), 1.0)
    different = (1 - same) * real
    negative = jnp.sum(losses * different) / jnp.maximum(different.sum(), 1.0)
    return 0.5 * (positive + negative)

  return _metric.build(embedding, name="siamese", ways=ways, batch_norm=batch_norm,
                       flatten=True, init_extra=init_extra, fit=fit, score=score,
                       objective=objective, masks=True)


def verification_metrics(scores: np.ndarray, same: np.ndarray, *, threshold: float = 0.0
                         ) -> dict[str, float]:
  """Accuracy, ROC-AUC and F1 of same/different decisions ``scores > threshold``.

  Args:
    scores: ``[n]`` pair scores, higher meaning "same" (logits; use ``threshold=0.5`` for
      probabilities).
    same: ``[n]`` booleans, whether each pair shares a class.
    threshold: decision threshold for accuracy and F1.

  Returns:
    ``{"accuracy", "roc_auc", "f1"}``; ``roc_auc`` is NaN when only one kind of pair occurs.

  Example:
    >>> m = verification_metrics(np.array([2.0, -1.0, 0.5, -3.0]), np.array([1, 0, 0, 0]))
    >>> m["roc_auc"], m["accuracy"]
    (1.0, 0.75)
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  same = np.asarray(same).astype(bool).reshape(-1)
  if scores.shape != same.shape:
    raise ValueError(f"scores and same must have the same length, got {scores.shape} and "
                     f"{same.shape}.")
  decided = scores > threshold
  true_positive = np.sum(decided & same)
  precision_denominator, recall_denominator = decided.sum(), same.sum()
  f1 = (2.0 * true_positive / (precision_denominator + recall_denominator)
        if precision_denominator + recall_denominator else 0.0)
  n_pos, n_neg = int(same.sum()), int((~same).sum())
  if n_pos and n_neg:
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty_like(scores)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    auc = (ranks[same].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
  else:
    auc = float("nan")
  return {"accuracy": float(np.mean(decided == same)), "roc_auc": float(auc), "f1": float(f1)}
