"""Task losses with trace-time shape checks, and the metrics that go with them."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import optax

from metajax.core.types import Array


class Loss(NamedTuple):
  """A task loss and the metrics reported beside it.

  Attributes:
    fn: ``fn(outputs, targets) -> scalar`` mean loss over a batch.
    metrics: ``metrics(outputs, targets) -> dict`` extra metrics (e.g. accuracy).
    classification: whether targets are integer class labels.
    masked_fn: ``masked_fn(outputs, targets, mask) -> scalar`` mean over the examples where
      the boolean ``mask`` is True (padded episodes), or ``None``: learners then refuse masked
      tasks.
    masked_metrics: ``masked_metrics(outputs, targets, mask) -> dict``, likewise.

  Example:
    A mean absolute error for regression, usable wherever ``loss="mse"`` is:

    >>> import jax.numpy as jnp
    >>> mae = Loss(lambda o, y: jnp.mean(jnp.abs(o - y)), lambda o, y: {}, False)
    >>> float(mae.value(jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [0.0]])))
    2.0
    >>> mae.supports_masks
    False
  """

  fn: Callable[[Array, Array], Array]
  metrics: Callable[[Array, Array], dict[str, Array]]
  classification: bool
  masked_fn: Callable[[Array, Array, Array], Array] | None = None
  masked_metrics: Callable[[Array, Array, Array], dict[str, Array]] | None = None

  @property
  def supports_masks(self) -> bool:
    return self.masked_fn is not None and self.masked_metrics is not None

  def value(self, outputs: Array, targets: Array, mask: Array | None = None) -> Array:
    """The loss, over the real examples only when ``mask`` is given."""
    return self.fn(outputs, targets) if mask is None else self.masked_fn(outputs, targets, mask)

  def metric_values(self, outputs: Array, targets: Array,
                    mask: Array | None = None) -> dict[str, Array]:
    """The metrics, over the real examples only when ``mask`` is given."""
    if mask is None:
      return self.metrics(outputs, targets)
    return self.masked_metrics(outputs, targets, mask)


def softmax_cross_entropy(logits: Array, labels: Array, mask: Array | None = None) -> Array:
  """Mean cross-entropy of ``logits [n, ways]`` against integer ``labels [n]``.

  With a boolean ``mask [n]``, the mean over the examples where it is True (padded episodes).

  Args:
    logits: unnormalised class scores, shape ``[n, ways]``.
    labels: integer class labels in ``[0, ways)``, shape ``[n]``.
    mask: optional boolean ``[n]``; only the True examples count (all count when ``None``).

  Returns:
    A scalar: the mean negative log-likelihood in nats.

  Raises:
    ValueError: when the shapes are not ``[n, ways]`` and ``[n]``.
    TypeError: when ``labels`` are not integers.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.zeros((2, 4))                  # uniform over 4 classes: loss log(4)
    >>> round(float(softmax_cross_entropy(logits, jnp.array([0, 3]))), 4)
    1.3863
  """
  if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
    raise ValueError(
        "cross-entropy needs model outputs of shape [n, ways] and integer labels of shape [n], "
        f"got outputs {logits.shape} and labels {labels.shape}; make the model end in a "
        "Dense(ways) layer (flatten first) or use loss='mse' for regression."
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(
        f"cross-entropy needs integer class labels, got dtype {labels.dtype}; cast them with "
        "labels.astype(jnp.int32), or use loss='mse' for real-valued targets."
    )
  return _masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels), mask)


def _masked_mean(values: Array, mask: Array | None) -> Array:
  if mask is None:
    return values.mean()
  weights = mask.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def mean_squared_error(predictions: Array, targets: Array, mask: Array | None = None) -> Array:
  """Mean squared error; shapes must match exactly (no silent broadcasting).

  With a boolean ``mask [n]``, the mean over the examples where it is True.

  Args:
    predictions: model outputs, e.g. ``[n, 1]``.
    targets: targets of exactly the same shape.
    mask: optional boolean ``[n]`` over the leading axis; only the True examples count.

  Returns:
    A scalar: the mean of the squared differences (in squared target units).

  Raises:
    ValueError: when ``predictions`` and ``targets`` differ in shape.

  Example:
    >>> import jax.numpy as jnp
    >>> float(mean_squared_error(jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [0.0]])))
    5.0
    >>> float(mean_squared_error(jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [0.0]]),
    ...                          jnp.array([True, False])))
    1.0
  """
  if predictions.shape != targets.shape:
    raise ValueError(
        f"mean squared error needs model outputs shaped like the targets, got outputs "
        f"{predictions.shape} and targets {targets.shape}; give the model "
        f"{targets.shape[-1] if targets.ndim > 1 else 1} output(s) per example or reshape the "
        "targets."
    )
  if mask is None:
    return jnp.mean((predictions - targets) ** 2)
  per_example = jnp.mean(((predictions - targets) ** 2).reshape(predictions.shape[0], -1), -1)
  return _masked_mean(per_example, mask)


def accuracy(logits: Array, labels: Array, mask: Array | None = None) -> Array:
  """Fraction of ``argmax(logits)`` equal to ``labels`` (over the True entries of ``mask``).

  Args:
    logits: class scores, shape ``[n, ways]``.
    labels: integer class labels, shape ``[n]``.
    mask: optional boolean ``[n]``; only the True examples count.

  Returns:
    A float32 scalar in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    >>> round(float(accuracy(logits, jnp.array([0, 1, 1]))), 4)
    0.6667
  """
  return _masked_mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32), mask)


CROSS_ENTROPY = Loss(softmax_cross_entropy, lambda o, y: {"accuracy": accuracy(o, y)}, True,
                     softmax_cross_entropy, lambda o, y, m: {"accuracy": accuracy(o, y, m)})
MSE = Loss(mean_squared_error, lambda o, y: {}, False, mean_squared_error, lambda o, y, m: {})
_NAMED = {"cross_entropy": CROSS_ENTROPY, "mse": MSE}


def resolve_loss(loss: str | Loss) -> Loss:
  """Returns the :class:`Loss` for a name (``"cross_entropy"``, ``"mse"``) or a Loss."""
  if isinstance(loss, Loss):
    return loss
  if isinstance(loss, str) and loss in _NAMED:
    return _NAMED[loss]
  raise ValueError(
      f"unknown loss {loss!r}; use one of {sorted(_NAMED)} or a metajax.Loss(fn, metrics, "
      "classification)."
  )
