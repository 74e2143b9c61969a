"""Shared data types: a few-shot task and a batch of tasks."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array
PyTree = Any
PRNGKey = jax.Array


class Task(NamedTuple):
  """One few-shot task, or a batch of tasks with a leading task axis.

  Classification tasks hold integer labels in ``[0, ways)``; regression tasks
  hold float targets with a trailing feature axis (``[n, 1]`` for sinusoids).

  Variable-size episodes (Meta-Dataset: a different number of classes and shots in every
  episode) are padded to static maximum sizes so a compiled step compiles once, and carry
  boolean masks: ``support_mask[i]`` is True for a real support example and False for padding
  (likewise ``query_mask``). Padding is ignored by every learner with
  ``MetaLearner.supports_masks``; any other learner's ``check_task`` raises on a masked task.
  Masks default to ``None`` (every example is real), so four-field tasks work unchanged.
  Unpack the data fields with ``task[:4]`` (iterating a task also yields the two masks).

  Attributes:
    support_x: support inputs, ``[n_support, *feature_shape]``.
    support_y: support labels or targets, ``[n_support]`` or ``[n_support, d]``.
    query_x: query inputs, ``[n_query, *feature_shape]``.
    query_y: query labels or targets, ``[n_query]`` or ``[n_query, d]``.
    support_mask: ``[n_support]`` bool, True for real examples, or ``None`` (all real).
    query_mask: ``[n_query]`` bool, True for real examples, or ``None`` (all real).

  Example:
    A 2-way 1-shot task of 3-feature inputs with one query per class:

    >>> import jax.numpy as jnp
    >>> task = Task(jnp.zeros((2, 3)), jnp.array([0, 1]), jnp.ones((2, 3)), jnp.array([0, 1]))
    >>> task.is_masked
    False
    >>> support_x, support_y, query_x, query_y = task[:4]
    >>> query_x.shape
    (2, 3)
  """

  support_x: Array
  support_y: Array
  query_x: Array
  query_y: Array
  support_mask: Array | None = None
  query_mask: Array | None = None

  @property
  def is_masked(self) -> bool:
    """Whether the task carries a mask (it may hold padding)."""
    return self.support_mask is not None or self.query_mask is not None
