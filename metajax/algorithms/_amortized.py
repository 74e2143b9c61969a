"""Shared machinery of amortized learners (hypernetwork, VERSA, SNAIL).

An amortized learner embeds the support and query sets with a shared network and then *reads* the
support embeddings with a second, meta-learned network that writes the task's classifier in one
forward pass: the weights of a linear head (hypernetwork), a distribution over them (VERSA), or
a memory that a sequence model attends to (SNAIL). Unlike :mod:`metajax.algorithms._metric`,
``fit`` receives the task's PRNG key (VERSA samples weights, SNAIL shuffles the support order)
and whether it runs for meta-training or for evaluation.

Ways. ``ways`` is static and required: these learners write one classifier column per class
``0..ways-1`` from that class's support examples, so ``check_task`` rejects a support set in
which a class has no example (the class would get a classifier made of nothing). Episodes are
the usual ``[0, ways)``-labelled ones; the support may come in any order.

BatchNorm: as in :mod:`metajax.algorithms._metric` (``"transductive"`` embeds support and query
as one batch in ``task_loss`` and ``evaluate``; ``"frozen"`` uses the stored statistics).

Masks: as in :mod:`metajax.algorithms._metric`, when built with ``masks=True``: padded support
rows reach ``fit`` with zero features and the out-of-range label ``ways`` (their one-hot rows
are zero, so per-class means and pools ignore them; ``support_y < ways`` is the real-example
mask for any other use), the embedding gets the episode mask for its BatchNorm statistics, and
the query loss and accuracy average over the real queries only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metajax.algorithms import _metric
from metajax.algorithms._gradient_based import check_batch_norm, check_model
from metajax.core.learner import Model
from metajax.core.losses import accuracy, softmax_cross_entropy
from metajax.core.masks import with_masks
from metajax.core.meta_learner import MetaLearner, grad_of_task_loss
from metajax.core.types import Array, PRNGKey, PyTree, Task

# fit(meta_params, support_features, support_y, key, *, training, steps) -> adapted
Fit = Callable[..., Any]
# score(meta_params, adapted, query_features) -> [n_query, ways] logits (or log-probabilities)
Score = Callable[[PyTree, Any, Array], Array]


def check_required_ways(ways: object, name: str) -> int:
  """Returns ``ways`` as an int, or raises: these learners need a static class count."""
  if ways is None:
    raise ValueError(
        f"{name} needs ways=<classes per episode> (a static int): it writes one classifier "
        "column per class; pass e.g. ways=5.")
  return _metric.check_ways(ways)


def check_size(value: object, name: str) -> int:
  """Returns a layer size as an int, or raises if it is not a positive Python int."""
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
    raise ValueError(f"{name} must be a positive Python int (a layer size), got {value!r}; "
                     f"pass e.g. {name}=64.")
  return int(value)


def mlp_init(key: PRNGKey, sizes: list[int], *, zero_last: bool = False) -> list[dict]:
  """Parameters of a multi-layer perceptron ``sizes[0] -> ... -> sizes[-1]``.

  LeCun-normal weights and zero biases; ``zero_last`` zeroes the last layer's weights, so the
  network starts as the constant function of its last bias.
  """
  layers = []
  for i, (layer_key, fan_in, fan_out) in enumerate(zip(jax.random.split(key, len(sizes) - 1),
                                                       sizes[:-1], sizes[1:])):
    last = i == len(sizes) - 2
    weights = (jnp.zeros((fan_in, fan_out), jnp.float32) if last and zero_last else
               jax.random.normal(layer_key, (fan_in, fan_out), jnp.float32) / np.sqrt(fan_in))
    layers.append({"w": weights, "b": jnp.zeros((fan_out,), jnp.float32)})
  return layers


def mlp_apply(layers: list[dict], x: Array) -> Array:
  """ELU between layers, none after the last (ELU is smooth enough for finite differences)."""
  for i, layer in enumerate(layers):
    x = x @ layer["w"] + layer["b"]
    if i < len(layers) - 1:
      x = jax.nn.elu(x)
  return x


def build(
    embedding: Model,
    *,
    name: str,
    ways: int,
    batch_norm: str,
    init_extra: Callable[[], PyTree],
    fit: Fit,
    score: Score,
    masks: bool = False,
    mask_reason: str = "it was built without mask support",
) -> MetaLearner:
  """Builds an amortized :class:`MetaLearner`.

  Meta-parameters are ``{"embedding": params, **init_extra()}``. The query loss is the softmax
  cross-entropy of ``score``'s outputs (for normalised log-probabilities, as VERSA's predictive,
  that is the negative log-likelihood).

  Args:
    embedding: the embedding network (outputs are flattened to ``[n, d]``).
    name: algorithm name.
    ways: the static class count (required), see the module docstring.
    batch_norm: ``"transductive"`` or ``"frozen"``.
    init_extra: the algorithm's own initial meta-parameters.
    fit: ``fit(meta_params, support_features, support_y, key, *, training, steps) -> adapted``;
      ``key`` is the task's key (``None`` when the caller gave none), ``training`` is True in
      ``task_loss``, ``steps`` the test-time override of inner steps (or None).
    score: ``score(meta_params, adapted, query_features) -> [n_query, ways]``.
    masks: ``fit`` and ``score`` ignore padded support rows as the module docstring describes,
      so masked (padded) tasks are supported; else ``check_task`` refuses them.
    mask_reason: why masks are not supported, for the error message.
  """
  embedding = check_model(embedding)
  ways = check_required_ways(ways, name)
  train = check_batch_norm(batch_norm)
  embed, masks, mask_reason = _metric.masked_embed(embedding, train=train, flatten=True,
                                                   masks=masks, mask_reason=mask_reason)

  def hide_padding(features, labels, support_mask):
    """Zero features and the out-of-range label ``ways`` for padded support rows."""
    if support_mask is None:
      return features, labels
    return jnp.where(support_mask[:, None], features, 0.0), jnp.where(support_mask, labels, ways)

  def run_episode(meta_params, task, key, *, training, steps):
    n_support = task.support_x.shape[0]
    episode_mask = None
    if task.is_masked:
      _, _, _, _, support_mask, query_mask = with_masks(task)
      episode_mask = jnp.concatenate([support_mask, query_mask])
    features = embed(meta_params, jnp.concatenate([task.support_x, task.query_x]), episode_mask)
    support_features, support_y = hide_padding(features[:n_support], task.support_y,
                                                task.support_mask)
    adapted = fit(meta_params, support_features, support_y, key, training=training, steps=steps)
    logits = score(meta_params, adapted, features[n_support:])
    return softmax_cross_entropy(logits, task.query_y, task.query_mask), logits

  def init():
    # Fresh buffers: a donating meta-step must not delete the model's own arrays.
    return {"embedding": jax.tree.map(jnp.array, embedding.params), **init_extra()}

  def task_loss(meta_params, task, key, step):
    del step
    loss, logits = run_episode(meta_params, task, key, training=True, steps=None)
    return loss, {"accuracy": accuracy(logits, task.query_y, task.query_mask)}

  def adapt(meta_params, support_x, support_y, key=None, *, steps=None, mask=None):
    features, labels = hide_padding(embed(meta_params, support_x, mask), support_y, mask)
    return fit(meta_params, features, labels, key, training=False, steps=steps)

  def predict(meta_params, adapted, x):
    return score(meta_params, adapted, embed(meta_params, x))

  def evaluate(meta_params, task, key=None, *, steps=None):
    loss, logits = run_episode(meta_params, task, key, training=False, steps=steps)
    return {"loss": loss, "accuracy": accuracy(logits, task.query_y, task.query_mask)}

  def predict_query(meta_params, support_x, support_y, query_x, key=None, *, steps=None):
    # Support and query embedded as one batch, as evaluate does.
    unlabelled = jnp.zeros(query_x.shape[0], jnp.int32)
    return run_episode(meta_params, Task(support_x, support_y, query_x, unlabelled), key,
                       training=False, steps=steps)[1]

  return MetaLearner(init, task_loss, grad_of_task_loss(task_loss), adapt, predict, evaluate,
                     make_checker(ways, name, masks=masks, reason=mask_reason), name, masks,
                     predict_query=predict_query)


def make_checker(ways: int, name: str, *, masks: bool = False,
                 reason: str = "") -> Callable[[Task], None]:
  """Host-side task check: the metric learners' checks, and every class in every support set
  (its real, unpadded examples)."""
  metric_check = _metric.make_checker(ways, masks=masks, name=name, reason=reason)

  def check_task(tasks: Task) -> None:
    metric_check(tasks)
    if isinstance(tasks.support_y, jax.core.Tracer):
      return
    n_support = np.shape(tasks.support_y)[-1]
    support = np.asarray(tasks.support_y).reshape(-1, n_support)
    real = _metric._concrete_mask(tasks.support_mask, support.shape)
    for i, labels in enumerate(support):
      if real is not None:
        labels = labels[real[i]]
      missing = np.setdiff1d(np.arange(ways), labels)
      if missing.size:
        raise ValueError(
            f"the support set of task {i} has no example of classes {missing.tolist()}, but "
            f"{name} writes one classifier column per class 0..{ways - 1} from that class's "
            f"support examples; give every class at least one support example, or build the "
            f"learner with ways=<classes per episode> ({len(np.unique(labels))} here)."
        )

  return check_task
