"""Trace-time input checks whose messages name the rule, the value and the fix."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import PyTree, Task


def check_steps(steps: object, name: str = "steps", *, minimum: int = 0) -> int:
  """Returns ``steps`` (any static count: steps, ways, episodes) as an int, or raises.

  Raises TypeError unless it is an integer (bool excluded), ValueError if it is < minimum.
  """
  if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
    raise TypeError(
        f"{name} must be a Python int (a static count), got {steps!r} of type "
        f"{type(steps).__name__}; pass e.g. {name}=5."
    )
  if steps < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {steps}; pass a count such as {name}=1.")
  return int(steps)


def check_positive(value: object, name: str) -> float:
  """Returns ``value`` as a float, or raises if it is not a finite positive number."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
    raise TypeError(f"{name} must be a finite number, got {value!r}.")
  if value <= 0:
    raise ValueError(f"{name} must be > 0, got {value}; pass a positive value.")
  return float(value)


def check_float_params(params: PyTree, name: str = "params") -> None:
  """Raises if any leaf of ``params`` is not a floating-point array."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  if not leaves:
    raise ValueError(f"{name} is an empty pytree: there is nothing to meta-learn.")
  for path, leaf in leaves:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"{name} must hold only floating-point leaves (they are differentiated), but "
          f"{name}{jax.tree_util.keystr(path)} has dtype {dtype}; cast it with "
          f"jnp.asarray(x, jnp.float32) or move it into the model's non-trainable state."
      )


def check_task_shapes(task: Task, *, batched: bool, masks: bool = False,
                      name: str = "this learner") -> None:
  """Raises if support and query disagree on feature shapes or example counts.

  A masked (padded) task raises unless ``masks`` says the caller handles masks, so a learner
  that was written before masks existed refuses padding instead of training on it.
  """
  from metajax.core.masks import check_masks

  check_masks(task, supported=masks, name=name)
  lead = 1 if batched else 0
  what = "task batch" if batched else "task"
  for field in Task._fields[:4]:
    if not hasattr(getattr(task, field), "shape"):
      kind = type(getattr(task, field)).__name__
      raise TypeError(f"{what}.{field} must be an array, got {kind}.")
  sx, sy, qx, qy = (jnp.shape(a) for a in task[:4])
  if batched:
    sizes = {f: jnp.shape(a)[0] if jnp.ndim(a) else None
             for f, a in zip(Task._fields, task) if a is not None}
    if len(set(sizes.values())) != 1:
      raise ValueError(
          f"every field of a task batch needs the same leading task axis, got {sizes}; "
          "stack whole tasks along axis 0."
      )
  if sx[lead + 1:] != qx[lead + 1:]:
    raise ValueError(
        f"support and query inputs must have the same feature shape, got support_x "
        f"{sx[lead + 1:]} and query_x {qx[lead + 1:]}; resize or reshape one of them."
    )
  if sx[lead] != sy[lead] or qx[lead] != qy[lead]:
    raise ValueError(
        f"each input needs one label: support_x has {sx[lead]} examples and support_y {sy[lead]}, "
        f"query_x has {qx[lead]} and query_y {qy[lead]} in the {what}."
    )


def check_labels(labels: jax.Array | np.ndarray, ways: int, field: str) -> None:
  """Raises if concrete integer ``labels`` fall outside ``[0, ways)``."""
  if isinstance(labels, jax.core.Tracer):
    return
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise TypeError(
        f"{field} must hold integer class labels in [0, {ways}) for a classification loss, got "
        f"dtype {jnp.result_type(labels)}; cast with labels.astype(np.int32)."
    )
  values = np.asarray(labels)
  if values.size and (values.min() < 0 or values.max() >= ways):
    raise ValueError(
        f"{field} must lie in [0, ways) = [0, {ways}) (the model has {ways} outputs), got labels "
        f"from {values.min()} to {values.max()}; relabel each task's classes as 0..ways-1 or "
        f"give the model {values.max() + 1} outputs."
    )
