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

  Attributes:
    support_x: support inputs, ``[n_support, *feature_shape]``.
    support_y: support labels or targets, ``[n_support]`` or ``[n_support, d]``.
    query_x: query inputs, ``[n_query, *feature_shape]``.
    query_y: query labels or targets, ``[n_query]`` or ``[n_query, d]``.
  """

  support_x: Array
  support_y: Array
  query_x: Array
  query_y: Array
