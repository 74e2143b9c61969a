"""Shared machinery of the metric-based family (ProtoNet, Matching, Relation, Siamese, R2D2).

A metric learner embeds the support and query sets with a shared network, builds a task-specific
classifier from the support embeddings (``fit``: prototypes, a ridge head, ...) and scores the
query embeddings with it (``score``). Nothing is adapted by gradient steps.

Ways. Class statistics are one-hot matmuls, ``one_hot(support_y, width).T @ features``, so the
support set may come in any order. ``width`` must be static: it is the ``ways`` given to the
factory, overridden by ``ways=`` of ``adapt``/``evaluate``, and defaults to ``n_support`` (the
only static bound: a support set of n examples has at most n classes). Classes of ``[0, width)``
that do not occur in a task's support set get the logit ``ABSENT_LOGIT`` (softmax weight 0), so
one learner trains on 60-way episodes and evaluates 5- or 20-way ones unchanged; the loss and
accuracy equal those of a ``ways``-wide classifier. Query labels must occur in the support set.

BatchNorm. ``batch_norm="transductive"`` (default) runs the embedding in training mode: in
``task_loss`` and ``evaluate`` the support and query sets are embedded as **one batch**, so
BatchNorm normalises by the statistics of the whole episode (as a PyTorch ProtoNet in train
mode does); ``adapt`` and ``predict`` normalise each of their batches by its own statistics.
``batch_norm="frozen"`` uses the statistics stored in the model's state (the initial ones for
a fresh model, i.e. BatchNorm reduces to a learned affine map; or a pretrained backbone's).

Masks. A padded episode (``Task.support_mask`` / ``query_mask``, see :mod:`metajax.core.masks`)
reaches ``fit`` with the padded support rows' features zeroed and their labels set to ``ways``
(out of range: their one-hot rows are zero, so class statistics ignore them), and its loss and
accuracy average over the real queries only (``Episode.query_mask``). The embedding gets the
episode mask for its BatchNorm statistics. An algorithm whose ``fit``/``score``/``objective``
would still see padding (attention over all support rows, a set encoder) must handle it or pass
``masks=False``, which makes ``check_task`` refuse masked tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.algorithms._gradient_based import check_batch_norm, check_model
from metajax.core._checks import check_labels, check_task_shapes
from metajax.core.learner import Model
from metajax.core.losses import accuracy, softmax_cross_entropy
from metajax.core.masks import apply_model, check_masks, padding_is_invisible, with_masks
from metajax.core.meta_learner import MetaLearner, grad_of_task_loss
from metajax.core.types import Array, PyTree, Task

# Logit of a class absent from the support set: finite (no NaN gradients), exp() underflows to 0.
ABSENT_LOGIT = -1e30


class Episode(NamedTuple):
  """One embedded episode, as seen by an algorithm's objective.

  Attributes:
    support_features: support embeddings ``[n_support, ...]``.
    support_y: support labels ``[n_support]``.
    query_features: query embeddings ``[n_query, ...]``.
    query_y: query labels ``[n_query]``.
    adapted: the task-specific classifier built by ``fit``.
    logits: query scores ``[n_query, ways]`` from ``score``.
    ways: the static class width.
    query_mask: ``[n_query]`` float32, 1 for real queries and 0 for padding (all ones for an
      unpadded episode). Support padding is visible as ``support_y == ways``.
  """

  support_features: Array
  support_y: Array
  query_features: Array
  query_y: Array
  adapted: Any
  logits: Array
  ways: int
  query_mask: Array | None = None


def check_ways(ways: object) -> int | None:
  """Returns ``ways`` (a positive int or None), or raises."""
  if ways is None:
    return None
  if isinstance(ways, bool) or not isinstance(ways, int | np.integer) or ways < 1:
    raise ValueError(f"ways must be a positive Python int or None, got {ways!r}.")
  if ways < 2:
    raise ValueError(
        f"ways must be at least 2, got {ways}: a 1-way episode is not a classification task "
        "(every query belongs to the only class, so the loss is 0 and accuracy 100% whatever "
        "the model); use ways >= 2 (or None: the support size)."
    )
  return int(ways)


def one_hot(labels: Array, ways: int) -> Array:
  """``[n, ways]`` float one-hot of integer labels (labels >= ways give zero rows)."""
  return jax.nn.one_hot(labels, ways, dtype=jnp.float32)


def class_counts(labels: Array, ways: int) -> Array:
  """``[ways]`` number of examples of each class."""
  return one_hot(labels, ways).sum(axis=0)


def class_sums(features: Array, labels: Array, ways: int) -> Array:
  """``[ways, *feature_shape]`` sum of the features of each class (any example order)."""
  return jnp.einsum("nw,n...->w...", one_hot(labels, ways), features)


def class_means(features: Array, labels: Array, ways: int) -> Array:
  """``[ways, *feature_shape]`` mean feature of each class (zeros for absent classes)."""
  counts = class_counts(labels, ways)
  scale = 1.0 / jnp.maximum(counts, 1.0)
  return class_sums(features, labels, ways) * scale.reshape((-1,) + (1,) * (features.ndim - 1))


def mask_absent(logits: Array, counts: Array, fill: float = ABSENT_LOGIT) -> Array:
  """Sets the logits of classes with no support example to ``fill``."""
  return jnp.where(counts > 0, logits, fill)


def build(
    embedding: Model,
    *,
    name: str,
    ways: int | None,
    batch_norm: str,
    flatten: bool,
    init_extra: Callable[[], PyTree],
    fit: Callable[[PyTree, Array, Array, int], Any],
    score: Callable[[PyTree, Any, Array], Array],
    objective: Callable[[PyTree, Episode], Array] | None = None,
    masks: bool = False,
    mask_reason: str = "it was built without mask support",
) -> MetaLearner:
  """Builds a metric-based :class:`MetaLearner`.

  Meta-parameters are ``{"embedding": params, **init_extra()}``.

  Args:
    embedding: the embedding network.
    name: algorithm name.
    ways: static class width (None: the support size), see the module docstring.
    batch_norm: ``"transductive"`` or ``"frozen"``.
    flatten: flatten embeddings to ``[n, d]`` (False keeps feature maps).
    init_extra: the algorithm's own initial meta-parameters.
    fit: ``fit(meta_params, support_features, support_y, ways) -> adapted``.
    score: ``score(meta_params, adapted, query_features) -> [n_query, ways]`` logits.
    objective: ``objective(meta_params, episode) -> loss``; cross-entropy of the logits when None.
    masks: ``fit``, ``score`` and ``objective`` ignore padding as described in the module
      docstring, so masked (padded) tasks are supported; else ``check_task`` refuses them.
    mask_reason: why masks are not supported, for the error message.
  """
  embedding = check_model(embedding)
  ways = check_ways(ways)
  train = check_batch_norm(batch_norm)
  embed, masks, mask_reason = masked_embed(embedding, train=train, flatten=flatten, masks=masks,
                                           mask_reason=mask_reason)

  def hide_padding(features, labels, support_mask, w):
    """Zero features and out-of-range label ``w`` for padded support rows."""
    if support_mask is None:
      return features, labels
    keep = support_mask.reshape((-1,) + (1,) * (features.ndim - 1))
    return jnp.where(keep, features, 0.0), jnp.where(support_mask, labels, w)

  def width(override, n_support):
    override = check_ways(override)
    return override or ways or n_support

  def run_episode(meta_params, task, override):
    n_support = task.support_x.shape[0]
    episode_mask = None
    if task.is_masked:
      _, _, _, _, support_mask, query_mask = with_masks(task)
      episode_mask = jnp.concatenate([support_mask, query_mask])
    features = embed(meta_params, jnp.concatenate([task.support_x, task.query_x]), episode_mask)
    support_features, query_features = features[:n_support], features[n_support:]
    w = width(override, n_support)
    support_features, support_y = hide_padding(support_features, task.support_y,
                                               task.support_mask, w)
    adapted = fit(meta_params, support_features, support_y, w)
    logits = score(meta_params, adapted, query_features)
    query_mask = (jnp.ones(task.query_y.shape[0], jnp.float32) if task.query_mask is None
                  else task.query_mask.astype(jnp.float32))
    episode = Episode(support_features, support_y, query_features, task.query_y, adapted,
                      logits, w, query_mask)
    loss = (softmax_cross_entropy(logits, task.query_y, task.query_mask) if objective is None
            else objective(meta_params, episode))
    return loss, logits

  def init():
    # Fresh buffers: a donating meta-step must not delete the model's own arrays.
    return {"embedding": jax.tree.map(jnp.array, embedding.params), **init_extra()}

  def task_loss(meta_params, task, key, step):
    del key, step
    loss, logits = run_episode(meta_params, task, None)
    return loss, {"accuracy": accuracy(logits, task.query_y, task.query_mask)}

  def adapt(meta_params, support_x, support_y, key=None, *, steps=None, ways=None, mask=None):
    del key, steps
    w = width(ways, support_x.shape[0])
    features, labels = hide_padding(embed(meta_params, support_x, mask), support_y, mask, w)
    return fit(meta_params, features, labels, w)

  def predict(meta_params, adapted, x):
    return score(meta_params, adapted, embed(meta_params, x))

  def evaluate(meta_params, task, key=None, *, steps=None, ways=None):
    del key, steps
    loss, logits = run_episode(meta_params, task, ways)
    return {"loss": loss, "accuracy": accuracy(logits, task.query_y, task.query_mask)}

  def predict_query(meta_params, support_x, support_y, query_x, key=None, *, steps=None,
                    ways=None):
    del key, steps  # support and query embedded as one batch, as evaluate does
    unlabelled = jnp.zeros(query_x.shape[0], jnp.int32)
    return run_episode(meta_params, Task(support_x, support_y, query_x, unlabelled), ways)[1]

  return MetaLearner(init, task_loss, grad_of_task_loss(task_loss), adapt, predict, evaluate,
                     make_checker(ways, masks=masks, name=name, reason=mask_reason), name, masks,
                     predict_query)


def masked_embed(
    embedding: Model, *, train: bool, flatten: bool, masks: bool, mask_reason: str,
) -> tuple[Callable[..., Array], bool, str]:
  """The embedding function of a metric or amortized learner, and whether it hides padding.

  Args:
    embedding: the (checked) embedding network.
    train: BatchNorm in training (transductive) mode.
    flatten: flatten embeddings to ``[n, d]``.
    masks: the algorithm itself ignores padding (see the module docstring).
    mask_reason: why masks are not supported, for the error message.

  Returns:
    ``(embed, masks, mask_reason)``: ``embed(meta_params, x, example_mask=None)`` applies the
    embedding to ``x`` (its BatchNorm statistics over the rows where ``example_mask`` is True);
    ``masks`` turns False, with the reason, when the embedding's transductive BatchNorm cannot
    take a mask, so padding would change the real rows' embeddings.
  """
  if masks and not padding_is_invisible(embedding, train):
    masks, mask_reason = False, (
        "its embedding has BatchNorm state in transductive mode but apply() takes no mask=; use "
        "batch_norm='frozen' or an embedding whose apply takes mask= (metajax.models.conv4_model)")
  state = embedding.state

  def embed(meta_params, x, example_mask=None):
    features = apply_model(embedding, meta_params["embedding"], x, train=train,
                           mask=example_mask, state=state)
    return features.reshape(features.shape[0], -1) if flatten else features

  return embed, masks, mask_reason


def make_checker(ways: int | None, *, masks: bool = False, name: str = "this learner",
                 reason: str = "") -> Callable[[Task], None]:
  """Host-side task check: shapes, integer labels in range, query classes in the support set.

  Masked tasks raise unless ``masks``; padded examples are left out of the class check.
  """

  def check_task(tasks: Task) -> None:
    batched = np.ndim(tasks.support_y) > 1
    check_masks(tasks, supported=masks, name=name, reason=reason)
    check_task_shapes(tasks, batched=batched, masks=True, name=name)
    for field in ("support_y", "query_y"):
      if np.ndim(getattr(tasks, field)) != 1 + batched:
        raise ValueError(
            f"{field} must hold integer class labels of shape [n] per task, got shape "
            f"{np.shape(getattr(tasks, field))}."
        )
    n_support = np.shape(tasks.support_y)[-1]
    limit = ways or n_support
    if ways is None:
      for field in ("support_y", "query_y"):
        labels = getattr(tasks, field)
        if isinstance(labels, jax.core.Tracer):
          continue
        values = np.asarray(labels)
        if values.size and (values.min() < 0 or values.max() >= n_support):
          raise ValueError(
              f"{field} must lie in [0, n_support) = [0, {n_support}) when the learner has no "
              f"ways, got labels from {values.min()} to {values.max()}; relabel each task's "
              "classes as 0..ways-1."
          )
    check_labels(tasks.support_y, limit, "support_y")
    check_labels(tasks.query_y, limit, "query_y")
    if isinstance(tasks.support_y, jax.core.Tracer) or isinstance(tasks.query_y, jax.core.Tracer):
      return
    support = np.asarray(tasks.support_y).reshape(-1, n_support)
    query = np.asarray(tasks.query_y).reshape(support.shape[0], -1)
    support_real = _concrete_mask(tasks.support_mask, support.shape)
    query_real = _concrete_mask(tasks.query_mask, query.shape)
    if support_real is None or query_real is None:
      return
    for i, (s, q) in enumerate(zip(support, query)):
      s, q = s[support_real[i]], q[query_real[i]]
      missing = np.setdiff1d(q, s)
      if missing.size:
        raise ValueError(
            f"query labels {missing.tolist()} of task {i} have no support example; every query "
            "class needs at least one support example (sample support and query from the same "
            "classes)."
        )
      if np.unique(s).size < 2:
        raise ValueError(
            f"task {i} has {np.unique(s).size} class in its support set (labels {np.unique(s)}); "
            "a classification episode needs at least 2 classes (with one, the loss is 0 and "
            "accuracy 100% whatever the model), so sample ways >= 2."
        )

  return check_task


def _concrete_mask(mask: Array | None, shape: tuple[int, ...]) -> np.ndarray | None:
  """A host bool mask of ``shape`` (all True for None), or None when ``mask`` is traced."""
  if mask is None:
    return np.ones(shape, bool)
  if isinstance(mask, jax.core.Tracer):
    return None
  return np.asarray(mask, bool).reshape(shape)
