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
  """

  fn: Callable[[Array, Array], Array]
  metrics: Callable[[Array, Array], dict[str, Array]]
  classification: bool


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean cross-entropy of ``logits [n, ways]`` against integer ``labels [n]``."""
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
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def mean_squared_error(predictions: Array, targets: Array) -> Array:
  """Mean squared error; shapes must match exactly (no silent broadcasting)."""
  if predictions.shape != targets.shape:
    raise ValueError(
        f"mean squared error needs model outputs shaped like the targets, got outputs "
        f"{predictions.shape} and targets {targets.shape}; give the model "
        f"{targets.shape[-1] if targets.ndim > 1 else 1} output(s) per example or reshape the "
        "targets."
    )
  return jnp.mean((predictions - targets) ** 2)


def accuracy(logits: Array, labels: Array) -> Array:
  """Fraction of ``argmax(logits)`` equal to ``labels``."""
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


CROSS_ENTROPY = Loss(softmax_cross_entropy, lambda o, y: {"accuracy": accuracy(o, y)}, True)
MSE = Loss(mean_squared_error, lambda o, y: {}, False)
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
