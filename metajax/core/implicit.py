"""Implicit meta-gradients: differentiate the solution of an inner problem, not its trajectory.

A bilevel problem has an inner solution ``w*(theta, data)``, a root of an optimality condition
``F(w, theta, data) = 0`` (for an inner objective ``f``, ``F = grad_w f``), and an outer loss of
``w*``. By the implicit function theorem, the gradient of the outer loss ``L(w*)`` is

  ``dL/dtheta = -(dF/dtheta)^T u``,  where  ``(dF/dw)^T u = dL/dw``,

so the inner solver is never differentiated: memory does not grow with its number of steps, and
any solver (an optax loop, a QP solver, a closed form) can be used. :func:`implicit_root` wraps a
solver as a ``jax.custom_vjp`` function whose backward pass solves that linear system:

* ``"cg"``: conjugate gradient (``jax.scipy.sparse.linalg.cg``) on Jacobian-vector products
  (Hessian-vector products for :func:`implicit_argmin`). Needs ``dF/dw``
  symmetric positive definite: true for ``F = grad_w f`` with ``f`` strongly convex in ``w``
  (:func:`implicit_argmin`; iMAML's proximal objective when ``lambda`` exceeds the most negative
  curvature of the support loss).
* ``"neumann"``: the truncated Neumann series ``u = eta * sum_j (I - eta A)^j v`` (Lorraine et
  al. 2020). Needs the eigenvalues of ``A = (dF/dw)^T`` in ``(0, 2 / eta)``.
* ``"lu"``: materialise ``(dF/dw)^T`` and solve it densely (``lineax.LU``); any non-singular
  system, for small ``w`` (the SVM dual of :func:`metajax.metaoptnet`).

Residual. The backward pass measures the relative residual ``|A u - v| / |v|`` of its own solve
with one more product (whatever the solver claims), so a singular or ill-conditioned system
(iMAML's ``lambda`` too small, too few CG steps) is reported instead of returning garbage. A
custom_vjp backward pass cannot return extra outputs, so the residual leaves as the *gradient of
a probe*: ``root(theta, data, probe)`` takes a scalar ``probe`` (zero) that it does not use, and
its cotangent is the residual. Differentiate with respect to the probe too (see
:func:`value_grad_and_residual`). If one probe feeds several roots, their residuals add up.

Errors inside ``jit``. The residual is only known inside the compiled backward pass. It is
returned (a metric, e.g. ``metrics["implicit_residual"]``), and :func:`check_residual` adds a
``jax.debug.callback`` that raises on the host when it exceeds a threshold. We chose a host
callback over ``equinox.error_if`` because its message can quote the residual's value, and over
``jax.experimental.checkify`` because that needs every caller (the meta-step, the trainer) to be
``checkify``-transformed. The error reaches the caller as a ``JaxRuntimeError`` whose message
ends with our ``ValueError``'s text. ``on_failure="report"`` skips the callback (no host
round-trip per task) and only returns the residual for the caller to check.

References:
  Rajeswaran, Finn, Kakade & Levine, "Meta-Learning with Implicit Gradients", NeurIPS 2019.
  https://arxiv.org/abs/1909.04630
  Lorraine, Vicol & Duvenaud, "Optimizing Millions of Hyperparameters by Implicit
  Differentiation", AISTATS 2020. https://arxiv.org/abs/1911.02590
  Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022.
  https://arxiv.org/abs/2105.15183
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.scipy.sparse.linalg import cg as conjugate_gradient

from metajax.core._checks import check_positive, check_steps
from metajax.core.types import Array, PyTree

SOLVERS = ("cg", "neumann", "lu")
FAILURE_POLICIES = ("raise", "report")


def _tree_norm(tree: PyTree) -> Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _sub(a: PyTree, b: PyTree) -> PyTree:
  return jax.tree.map(jnp.subtract, a, b)


def check_solver(solver: object, steps: object, tol: object,
                 neumann_step: object | None) -> tuple[str, int, float, float | None]:
  """Validates the linear-solve options of :func:`implicit_root` (before anything compiles)."""
  if solver not in SOLVERS:
    raise ValueError(
        f"solver must be one of {SOLVERS}, got {solver!r}: 'cg' for a symmetric positive "
        "definite system (the Hessian of a strongly convex inner objective), 'neumann' for a "
        "truncated Neumann series, 'lu' for a small dense system."
    )
  steps = check_steps(steps, "linear_steps", minimum=1)
  tol = check_positive(tol, "tol")
  if solver == "neumann":
    if neumann_step is None:
      raise ValueError(
          "solver='neumann' needs neumann_step (eta in u = eta * sum_j (I - eta A)^j v); pass "
          "a step no larger than 1 / (the largest curvature), e.g. the inner learning rate."
      )
    neumann_step = check_positive(neumann_step, "neumann_step")
  return solver, steps, tol, neumann_step


def _solve_transpose(matvec: Callable[[PyTree], PyTree], rhs: PyTree, *, solver: str,
                     steps: int, tol: float, neumann_step: float | None) -> PyTree:
  """Solves ``A u = rhs`` for the linear map ``matvec(u) = A u``."""
  if solver == "neumann":
    def body(_, carry):
      total, term = carry
      return _add(total, term), _sub(term, jax.tree.map(lambda x: neumann_step * x, matvec(term)))

    zeros = jax.tree.map(jnp.zeros_like, rhs)
    total, _ = jax.lax.fori_loop(0, steps, body, (zeros, rhs))
    return jax.tree.map(lambda x: neumann_step * x, total)
  if solver == "cg":
    # Not lineax.CG: it declares breakdown (returns NaN) when p^T A p < 2 eps n |r|^2, which for
    # the 10^5-parameter systems of meta-learning (n = parameters) rejects any step whose
    # Rayleigh quotient is below ~3, however well-posed the system. Plain CG stops at the tolerance
    # or the step cap, and the residual measured afterwards says how good the answer is.
    # One flat vector, not the pytree: under vmap the leaves of ``rhs`` can carry the task axis
    # at different positions (vmapped convolution kernels did, on an H200 with jax 0.11.2), and
    # the batching rule of the device_put inside jax.scipy's cg asserts one shared position.
    flat_rhs, unravel = jax.flatten_util.ravel_pytree(rhs)

    def flat_matvec(v: Array) -> Array:
      return jax.flatten_util.ravel_pytree(matvec(unravel(v)))[0]

    return unravel(conjugate_gradient(flat_matvec, flat_rhs, tol=tol, atol=0.0, maxiter=steps)[0])
  operator = lx.FunctionLinearOperator(matvec, jax.eval_shape(lambda: rhs))
  return lx.linear_solve(operator, rhs, lx.LU(), throw=False).value


def _add(a: PyTree, b: PyTree) -> PyTree:
  return jax.tree.map(jnp.add, a, b)


def implicit_root(
    solve: Callable[[PyTree, Any], PyTree],
    optimality_fn: Callable[[PyTree, PyTree, Any], PyTree],
    *,
    solver: str = "cg",
    linear_steps: int = 20,
    tol: float = 1e-6,
    neumann_step: float | None = None,
) -> Callable[..., PyTree]:
  """Gives a solver's output ``w*(theta, data)`` the implicit-function-theorem gradient.

  Args:
    solve: ``solve(theta, data) -> w``, any (approximate) solver of ``F(w, theta, data) = 0``;
      it is run but never differentiated (its trajectory is not stored).
    optimality_fn: ``F(w, theta, data) -> pytree shaped like w``, zero at the solution.
    solver: the linear solve of the backward pass, ``"cg"``, ``"neumann"`` or ``"lu"`` (see the
      module docstring).
    linear_steps: CG iterations or Neumann terms.
    tol: CG's relative tolerance ``|A u - v| <= tol |v|`` (it stops earlier when reached).
    neumann_step: the Neumann series' step ``eta`` (required for ``"neumann"``).

  Returns:
    ``root(theta, data=None, probe=None) -> w``. Gradients flow to ``theta`` (a pytree of
    floating-point arrays) through the implicit function theorem; ``data`` (the task, labels,
    hyperparameters) gets none. The cotangent of the scalar ``probe`` is the backward solve's
    relative residual ``|A u - v| / |v|`` (0 when ``v = 0``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> # w*(theta) = argmin_w |w|^2 / 2 - theta . w  is  theta:  dw*/dtheta = I.
    >>> root = implicit_root(lambda theta, data: theta, lambda w, theta, data: w - theta)
    >>> jax.grad(lambda t: jnp.sum(root(t) ** 2))(jnp.array([1.0, 2.0]))
    Array([2., 4.], dtype=float32)

  References:
    Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022.
  """
  solver, linear_steps, tol, neumann_step = check_solver(solver, linear_steps, tol,
                                                         neumann_step)

  @jax.custom_vjp
  def _root(theta, data, probe):
    del probe
    return jax.lax.stop_gradient(solve(theta, data))

  def fwd(theta, data, probe):
    del probe
    w = jax.lax.stop_gradient(solve(theta, data))
    return w, (w, theta, data)

  def bwd(residuals, cotangent):
    w, theta, data = residuals
    _, vjp_w = jax.vjp(lambda w: optimality_fn(w, theta, data), w)
    matvec = lambda u: vjp_w(u)[0]  # (dF/dw)^T u
    u = _solve_transpose(matvec, cotangent, solver=solver, steps=linear_steps, tol=tol,
                         neumann_step=neumann_step)
    rhs_norm = _tree_norm(cotangent)
    error = _tree_norm(_sub(matvec(u), cotangent))
    residual = jnp.where(rhs_norm > 0, error / jnp.where(rhs_norm > 0, rhs_norm, 1.0), 0.0)
    _, vjp_theta = jax.vjp(lambda theta: optimality_fn(w, theta, data), theta)
    (grad_theta,) = vjp_theta(jax.tree.map(jnp.negative, u))
    data_cotangent = jax.tree.map(_zero_cotangent, data)
    return grad_theta, data_cotangent, residual.astype(jnp.float32)

  _root.defvjp(fwd, bwd)

  def root(theta: PyTree, data: Any = None, probe: Array | None = None) -> PyTree:
    if probe is None:
      probe = jnp.zeros([], jnp.float32)
    return _root(theta, data, probe)

  return root


def _zero_cotangent(x):
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, jax.dtypes.float0)


def implicit_argmin(
    solve: Callable[[PyTree, Any], PyTree],
    objective: Callable[[PyTree, PyTree, Any], Array],
    **kwargs,
) -> Callable[..., PyTree]:
  """:func:`implicit_root` for ``w*(theta) = argmin_w objective(w, theta, data)``.

  The optimality condition is ``grad_w objective = 0``; its Jacobian is the Hessian, symmetric,
  so ``solver="cg"`` applies wherever the objective is strongly convex near ``w*``.

  Args:
    solve: ``solve(theta, data) -> w``, an (approximate) minimiser.
    objective: ``objective(w, theta, data) -> scalar``.
    **kwargs: ``solver``, ``linear_steps``, ``tol``, ``neumann_step`` of :func:`implicit_root`.

  Returns:
    ``root(theta, data=None, probe=None) -> w``, see :func:`implicit_root`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> # Proximal ridge: argmin_w |w - 3|^2 / 2 + |w - theta|^2 / 2 = (3 + theta) / 2.
    >>> objective = lambda w, theta, data: jnp.sum((w - 3.0) ** 2 + (w - theta) ** 2) / 2
    >>> root = implicit_argmin(lambda theta, data: (3.0 + theta) / 2, objective)
    >>> float(jax.grad(lambda t: jnp.sum(root(t)))(jnp.ones([])))
    0.5
  """
  return implicit_root(solve, jax.grad(objective), **kwargs)


def value_grad_and_residual(fn: Callable[..., tuple[Array, Any]]) -> Callable[..., Any]:
  """``fn(params, probe, *args) -> (loss, aux)`` to ``(loss, aux), grads, residual``.

  ``probe`` must reach :func:`implicit_root`'s ``root(..., probe=probe)``; its cotangent is the
  backward solve's relative residual.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> root = implicit_root(lambda theta, data: theta, lambda w, theta, data: w - theta)
    >>> fn = lambda t, probe: (jnp.sum(root(t, None, probe) ** 2), {})
    >>> (loss, _), grads, residual = value_grad_and_residual(fn)(jnp.ones(2))
    >>> float(residual)
    0.0
  """
  value_and_grad = jax.value_and_grad(fn, argnums=(0, 1), has_aux=True)

  def wrapped(params, *args):
    (loss, aux), (grads, residual) = value_and_grad(params, jnp.zeros([], jnp.float32), *args)
    return (loss, aux), grads, residual

  return wrapped


def implicit_task_functions(
    loss_with_probe: Callable[..., tuple[Array, Any]],
    *,
    max_residual: float,
    on_failure: str,
    what: str,
    fix: str,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
  """A learner's ``task_loss`` and ``task_grad`` when its query loss runs through an implicit solve.

  Args:
    loss_with_probe: ``loss_with_probe(meta_params, probe, task) -> (query_loss, metrics)``, whose
      implicit solve gets ``probe`` (see :func:`value_grad_and_residual`).
    max_residual: the largest acceptable relative residual of the backward solve.
    on_failure: ``"raise"`` or ``"report"`` (see :func:`check_residual`).
    what: what was solved, for the error message.
    fix: how to fix a failed solve, for the error message.

  Returns:
    ``(task_loss, task_grad)`` with the :class:`metajax.MetaLearner` signatures; ``task_grad``'s
    metrics hold ``"loss"`` and the solve's ``"implicit_residual"``.

  Example:
    >>> import jax.numpy as jnp
    >>> root = implicit_root(lambda theta, data: theta, lambda w, theta, data: w - theta)
    >>> fn = lambda p, probe, task: (jnp.sum(root(p, None, probe) ** 2), {})
    >>> _, task_grad = implicit_task_functions(fn, max_residual=1.0, on_failure="raise",
    ...                                        what="identity", fix="")
    >>> grads, metrics = task_grad(jnp.ones(2), None, None, 0)
    >>> grads.tolist(), float(metrics["implicit_residual"])
    ([2.0, 2.0], 0.0)
  """
  value_grad = value_grad_and_residual(loss_with_probe)

  def task_loss(meta_params, task, key, step):
    del key, step
    return loss_with_probe(meta_params, jnp.zeros([], jnp.float32), task)

  def task_grad(meta_params, task, key, step):
    del key, step
    (query_loss, metrics), grads, residual = value_grad(meta_params, task)
    check_residual(residual, max_residual=max_residual, on_failure=on_failure, what=what, fix=fix)
    return grads, {**metrics, "loss": query_loss, "implicit_residual": residual}

  return task_loss, task_grad


def check_residual(
    value: Array,
    *,
    max_residual: float,
    on_failure: str = "raise",
    what: str = "implicit meta-gradient",
    quantity: str = "relative residual of the linear solve",
    fix: str = "",
) -> None:
  """Raises on the host, from inside ``jit``, when ``value`` exceeds ``max_residual`` or is NaN.

  Args:
    value: a residual (any shape; the largest entry is checked).
    max_residual: the largest acceptable value.
    on_failure: ``"raise"`` (a ``jax.debug.callback`` raising ``ValueError``; it reaches the
      caller as a ``JaxRuntimeError`` quoting this message) or ``"report"`` (nothing: the caller
      reads the returned residual).
    what: what was solved, for the message.
    quantity: what ``value`` measures, for the message.
    fix: how to fix it, for the message.
  """
  if on_failure == "report":
    return

  def host_check(residual):
    worst = float(np.max(np.asarray(residual, np.float64)))
    if not (worst <= max_residual):
      raise ValueError(
          f"{what}: the {quantity} is {worst:.3g}, above max_residual={max_residual:g}, so "
          f"the result would be wrong. {fix}"
      )

  jax.debug.callback(host_check, value)


def check_failure_policy(on_failure: object, max_residual: object) -> tuple[str, float]:
  """Validates ``on_failure`` and ``max_residual``."""
  if on_failure not in FAILURE_POLICIES:
    raise ValueError(
        f"on_failure must be one of {FAILURE_POLICIES}, got {on_failure!r}: 'raise' stops with "
        "an error naming the residual, 'report' only returns it in the metrics."
    )
  max_residual = check_positive(max_residual, "max_residual")
  if not math.isfinite(max_residual):
    raise ValueError(f"max_residual must be finite, got {max_residual}.")
  return on_failure, max_residual

