"""Helpers to verify meta-gradients against independent computations.

Example:
  >>> import jax, jax.numpy as jnp
  >>> analytic, numeric = directional_derivatives(lambda p: jnp.sum(p ** 3), jnp.ones(3),
  ...                                             jax.random.key(0))
  >>> bool(jnp.allclose(analytic, numeric, rtol=1e-2))
  True
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.meta_learner import MetaLearner
from metajax.core.meta_step import split_learner_state
from metajax.core.types import Array, PRNGKey, PyTree, Task


def directional_derivatives(
    fn: Callable[[PyTree], Array],
    params: PyTree,
    key: PRNGKey,
    *,
    directions: int = 3,
    eps: float = 1e-3,
    grad: PyTree | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Compares ``<grad fn(params), v>`` with central differences along random ``v``.

  Args:
    fn: scalar function of a parameter pytree.
    params: point at which to differentiate.
    key: PRNG key for the random unit directions.
    directions: how many random directions to test.
    eps: finite-difference step (relative to the unit direction).
    grad: the gradient to test; default ``jax.grad(fn)(params)``.

  Returns:
    ``(analytic, numeric)``: arrays of ``directions`` directional derivatives,
    computed in float64 on the host for the differences.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> analytic, numeric = directional_derivatives(lambda p: jnp.sum(p ** 3), jnp.ones(3),
    ...                                             jax.random.key(0))
    >>> bool(jnp.allclose(analytic, numeric, rtol=1e-2))
    True

  References:
    Nocedal & Wright, "Numerical Optimization", 2nd ed., Springer 2006, Section 8.1 (central
    differences, error ``O(eps^2)``).
  """
  if grad is None:
    grad = jax.grad(fn)(params)
  leaves, treedef = jax.tree.flatten(params)
  fn = jax.jit(fn)
  analytic, numeric = [], []
  for k in jax.random.split(key, directions):
    keys = jax.random.split(k, len(leaves))
    vs = [jax.random.normal(kk, jnp.shape(x), jnp.result_type(x)) for kk, x in zip(keys, leaves)]
    norm = np.sqrt(sum(float(jnp.sum(v ** 2)) for v in vs))
    vs = [v / norm for v in vs]
    direction = jax.tree.unflatten(treedef, vs)
    plus = float(fn(jax.tree.map(lambda p, d: p + eps * d, params, direction)))
    minus = float(fn(jax.tree.map(lambda p, d: p - eps * d, params, direction)))
    numeric.append((plus - minus) / (2 * eps))
    analytic.append(sum(float(jnp.vdot(g, v)) for g, v in zip(jax.tree.leaves(grad), vs)))
  return np.asarray(analytic), np.asarray(numeric)


def check_meta_gradient(
    learner: MetaLearner,
    meta_params: PyTree,
    task: Task,
    key: PRNGKey,
    *,
    directions: int = 3,
    eps: float = 1e-3,
    rtol: float = 2e-2,
    atol: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
  """Asserts that ``learner.task_grad`` matches finite differences of ``task_loss``.

  Args:
    learner: an algorithm whose ``task_grad`` is the gradient of ``task_loss`` (its
      ``state_keys``, learner state that the meta-step sets, are left out of the check).
    meta_params: meta-parameters.
    task: one task (no leading task axis).
    key: PRNG key.
    directions: number of random directions.
    eps: finite-difference step.
    rtol: relative tolerance on each directional derivative.
    atol: absolute tolerance.

  Returns:
    ``(analytic, numeric)`` directional derivatives.

  With ReLU networks the adapted loss has small kinks; float32 differences with
  a step of 1e-3 can straddle one. Check such models in float64
  (``jax.config.update("jax_enable_x64", True)``, parameters and data cast to
  float64) with ``eps=1e-5``, or use smooth activations as the tests do.

  Raises:
    AssertionError: naming the direction and both values when they disagree.

  Example:
    MAML on a linear model, whose adapted loss is smooth:

    >>> import metajax, jax, jax.numpy as jnp
    >>> model = metajax.from_function(lambda p, x: x * p["w"], {"w": jnp.ones(1)})
    >>> learner = metajax.maml(model, inner_lr=0.1, loss="mse")
    >>> x = jnp.linspace(-1.0, 1.0, 4)[:, None]
    >>> task = metajax.Task(x, 2 * x, x, 2 * x)
    >>> analytic, numeric = check_meta_gradient(learner, learner.init(), task, jax.random.key(0))
    >>> analytic.shape
    (3,)
  """
  step = jnp.zeros([], jnp.int32)
  grads, _ = learner.task_grad(meta_params, task, key, step)
  # Learner state (MetaLearner.state_keys) is set by the meta-step, not differentiated.
  state_keys = getattr(learner, "state_keys", ())
  grads, _ = split_learner_state(grads, state_keys)
  meta_params, state = split_learner_state(meta_params, state_keys)
  analytic, numeric = directional_derivatives(
      lambda p: learner.task_loss({**p, **state} if state else p, task, key, step)[0],
      meta_params, key, directions=directions, eps=eps, grad=grads)
  bad = ~np.isclose(analytic, numeric, rtol=rtol, atol=atol)
  if bad.any():
    raise AssertionError(
        f"{learner.name}: meta-gradient disagrees with finite differences in directions "
        f"{np.flatnonzero(bad).tolist()}: analytic {analytic[bad]} vs numeric {numeric[bad]}."
    )
  return analytic, numeric
