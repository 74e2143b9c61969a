"""Implicit meta-gradients (iMAML, the bilevel helper), CAVIA and the MetaOptNet SVM head,
each against an independent computation: closed forms, finite differences, scipy."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from _tiny import (
    FEATURES,
    WAYS,
    classification_tasks,
    first,
    linear_regression_model,
    regression_task,
    tanh_classifier,
)

import metajax
from metajax.algorithms.metaoptnet import DualProblem, crammer_singer_dual
from metajax.core import implicit
from metajax.testing import check_meta_gradient

STEP = jnp.zeros([], jnp.int32)


def task_grad(learner, task, params=None):
  params = learner.init() if params is None else params
  return jax.jit(learner.task_grad)(params, task, jax.random.key(0), STEP)


# ----------------------------------------------------------------------------------- iMAML


def imaml_closed_form(task, theta, lam):
  """Proximal ridge regression: phi* and lam (H + lam I)^{-1} grad L_query(phi*), float64."""
  sx, sy, qx, qy = (np.asarray(a, np.float64) for a in task[:4])
  hessian = 2.0 / len(sx) * sx.T @ sx
  a = hessian + lam * np.eye(len(theta))
  phi = np.linalg.solve(a, 2.0 / len(sx) * sx.T @ sy + lam * theta)
  outer = 2.0 / len(qx) * qx.T @ (qx @ phi - qy)
  return phi, lam * np.linalg.solve(a, outer), a, outer


@pytest.mark.parametrize("solver", ["cg", "neumann", "lu"])
def test_imaml_meta_gradient_equals_the_closed_form_on_a_quadratic(solver):
  model, task, lam = linear_regression_model(), regression_task(), 0.5
  learner = metajax.imaml(model, lam=lam, inner_lr=0.2, steps=300, loss="mse", solver=solver,
                          cg_steps=300 if solver == "neumann" else 20)
  grads, metrics = task_grad(learner, task)
  theta = np.asarray(model.params["w"], np.float64)
  phi, expected, _, _ = imaml_closed_form(task, theta, lam)
  adapted = learner.adapt(learner.init(), task.support_x, task.support_y)
  np.testing.assert_allclose(adapted["w"], phi, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grads["model"]["w"], expected, rtol=1e-4, atol=1e-5)
  assert float(metrics["implicit_residual"]) < 1e-4


def test_cg_solve_under_vmap_with_the_task_axis_at_different_positions_per_leaf():
  """Vmapped convolution kernels carry the task axis at another position than biases do (an
  H200 iMAML run on jax 0.11.2 failed in jax.scipy's cg on exactly that); each task's solve must
  still equal the exact one."""
  scale = {"a": jnp.array([1.0, 2.0, 3.0]), "b": jnp.array([[4.0], [0.5]])}

  def matvec(u):  # A = diag(scale) + 0.1 * (the sum of all entries) * 1: symmetric positive
    total = sum(jnp.sum(x) for x in jax.tree.leaves(u))
    return jax.tree.map(lambda s, x: s * x + 0.1 * total, scale, u)

  def solve(rhs):
    return implicit._solve_transpose(matvec, rhs, solver="cg", steps=10, tol=1e-10,
                                     neumann_step=None)

  rng = np.random.default_rng(0)
  rhs = {"a": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),  # task axis 0
         "b": jnp.asarray(rng.normal(size=(2, 1, 4)), jnp.float32)}  # task axis 2
  solved = jax.vmap(solve, in_axes=({"a": 0, "b": 2},), out_axes={"a": 0, "b": 2})(rhs)
  dense = np.diag(np.concatenate([scale["a"], scale["b"].ravel()])) + 0.1
  for task in range(4):
    g = np.concatenate([rhs["a"][task], rhs["b"][..., task].ravel()])
    expected = np.linalg.solve(dense, g)
    got = np.concatenate([solved["a"][task], np.asarray(solved["b"][..., task]).ravel()])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_imaml_reports_the_true_residual_of_a_truncated_cg_solve():
  """With one CG step the residual is large, and equals |A u - g| / |g| computed here."""
  model, task, lam = linear_regression_model(), regression_task(), 0.5
  learner = metajax.imaml(model, lam=lam, inner_lr=0.2, steps=300, cg_steps=1, loss="mse",
                          on_failure="report")
  grads, metrics = task_grad(learner, task)
  _, exact, a, outer = imaml_closed_form(task, np.asarray(model.params["w"], np.float64), lam)
  u = np.asarray(grads["model"]["w"], np.float64) / lam
  residual = np.linalg.norm(a @ u - outer) / np.linalg.norm(outer)
  assert residual > 1e-3 and not np.allclose(grads["model"]["w"], exact, rtol=1e-3)
  np.testing.assert_allclose(float(metrics["implicit_residual"]), residual, rtol=1e-3)


def imaml_classifier(**kwargs):
  return metajax.imaml(tanh_classifier(), **{"lam": 4.0, "inner_lr": 0.2, "steps": 100,
                                             "cg_steps": 30, **kwargs})


def test_imaml_meta_gradient_matches_finite_differences_on_a_network():
  learner, task = imaml_classifier(), first(classification_tasks())
  _, metrics = task_grad(learner, task)
  assert float(metrics["inner_grad_norm"]) < 1e-5  # the inner problem is solved
  check_meta_gradient(learner, learner.init(), task, jax.random.key(0), directions=3, eps=1e-2,
                      rtol=1e-2, atol=1e-4)


def test_imaml_memory_does_not_store_the_inner_trajectory():
  """XLA temp memory of one task's meta-gradient: flat from 5 to 100 inner steps."""
  task = first(classification_tasks())

  def temp_bytes(steps):
    learner = imaml_classifier(steps=steps)
    compiled = jax.jit(learner.task_grad).lower(learner.init(), task, jax.random.key(0),
                                                STEP).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temp_bytes(100) <= 1.2 * temp_bytes(5) + 1024


def test_imaml_with_too_small_lambda_raises_naming_the_residual_and_the_fix():
  # After one inner step the support loss has curvature below -lam: I + H/lam is indefinite and
  # CG's answer is worse than returning zero (residual > 1). With two CG steps the residual
  # grows steadily as lam shrinks (0.03 at lam=4, 0.22 at 1, 1.08 at 0.1, 1.5 at 0.01); with
  # 30 it jumps between 0.2 and 200 with the rounding of the solve, so that is not tested.
  task = first(classification_tasks())
  with pytest.raises(Exception, match=r"relative residual of the linear solve is .* Raise lam"):
    jax.block_until_ready(task_grad(imaml_classifier(lam=1e-2, steps=1, cg_steps=2), task))
  _, metrics = task_grad(imaml_classifier(lam=1e-2, steps=1, cg_steps=2, on_failure="report"),
                         task)
  assert not float(metrics["implicit_residual"]) <= 1.0
  # A well-posed system solved by too few CG steps for the residual asked for raises too.
  with pytest.raises(Exception, match=r"above max_residual=0.001.*raise cg_steps"):
    jax.block_until_ready(task_grad(imaml_classifier(cg_steps=1, max_residual=1e-3), task))


def test_imaml_rejects_bad_options_before_compiling():
  with pytest.raises(ValueError, match="solver must be one of"):
    imaml_classifier(solver="qr")
  with pytest.raises(ValueError, match="lam must be > 0"):
    imaml_classifier(lam=0.0)
  with pytest.raises(ValueError, match="needs neumann_step"):
    imaml_classifier(solver="neumann", inner_optimizer=__import__("optax").adam(1e-3))


def test_implicit_root_gives_any_inner_problem_its_gradient():
  """Ridge regression w*(log_reg) = (X^T X + e^r I)^{-1} X^T y, differentiated in r."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=8).astype(np.float32)

  def objective(w, log_reg, data):
    features, targets = data
    return 0.5 * jnp.sum((features @ w - targets) ** 2) + 0.5 * jnp.exp(log_reg) * w @ w

  def closed_form(log_reg, data):
    features, targets = data
    return jnp.linalg.solve(features.T @ features + jnp.exp(log_reg) * jnp.eye(3),
                            features.T @ targets)

  outer = lambda w: jnp.sum(jnp.sin(w))
  exact = jax.grad(lambda r: outer(closed_form(r, (x, y))))(0.3)
  for solver in ("cg", "lu"):
    root = implicit.implicit_argmin(closed_form, objective, solver=solver)
    fn = lambda r, probe, root=root: (outer(root(r, (x, y), probe)), None)
    _, grad, residual = implicit.value_grad_and_residual(fn)(0.3)
    np.testing.assert_allclose(grad, exact, rtol=1e-4)
    assert float(residual) < 1e-4


# ----------------------------------------------------------------------------------- CAVIA

CONTEXT = 2


def cavia_learner(**kwargs):
  return metajax.cavia(tanh_classifier(inputs=FEATURES + CONTEXT), context_dim=CONTEXT,
                       **{"inner_lr": 0.5, "steps": 2, **kwargs})


def test_cavia_adapts_only_the_context():
  learner, task = cavia_learner(), first(classification_tasks())
  params = learner.init()
  before = jax.tree.map(np.array, params)
  context = learner.adapt(params, task.support_x, task.support_y)
  assert context.shape == (CONTEXT,) and float(jnp.linalg.norm(context)) > 0
  chex.assert_trees_all_equal(params, before)
  # The prediction is the meta-learned network on [x, context]: nothing else was adapted.
  x = task.query_x
  tiled = jnp.broadcast_to(context, (x.shape[0], CONTEXT))
  expected = tanh_classifier(inputs=FEATURES + CONTEXT).apply(
      params["model"], {}, jnp.concatenate([x, tiled], -1))[0]
  np.testing.assert_allclose(learner.predict(params, context, x), expected, rtol=1e-6)
  # Zero steps: the zero context.
  np.testing.assert_array_equal(learner.adapt(params, task.support_x, task.support_y, steps=0),
                                np.zeros(CONTEXT))


def test_cavia_meta_gradient_matches_finite_differences():
  learner, task = cavia_learner(), first(classification_tasks())
  check_meta_gradient(learner, learner.init(), task, jax.random.key(0), directions=3, eps=1e-2,
                      rtol=1e-2, atol=1e-4)


def test_cavia_names_the_input_width_it_needs():
  learner = metajax.cavia(tanh_classifier(), context_dim=CONTEXT)
  with pytest.raises(ValueError, match=r"per-example shape \(6,\).*cavia_mlp_model"):
    learner.check_task(classification_tasks())


# ------------------------------------------------------------------------------ MetaOptNet


def svm_problem(n_per_class=2, d=5, c=0.5, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(WAYS), n_per_class)
  x = rng.normal(size=(len(labels), d)) + 1.5 * rng.normal(size=(WAYS, d))[labels]
  return x, labels, np.eye(WAYS)[labels], c


def solve_dual(x, targets, c, ridge):
  gram = x @ x.T
  step = 1.0 / (np.linalg.eigvalsh(gram)[-1] + ridge)
  problem = DualProblem(jnp.asarray(targets, jnp.float32), jnp.asarray(c * targets, jnp.float32),
                        jnp.ones(WAYS, bool), jnp.asarray(step, jnp.float32))
  return crammer_singer_dual(jnp.asarray(gram, jnp.float32), problem, ridge=ridge,
                             max_iters=5000, tol=1e-6)


def test_svm_dual_matches_scipy_on_the_dual_and_the_primal():
  x, labels, targets, c = svm_problem()
  n, k = targets.shape
  for ridge in (1.0, 0.0):
    alpha, residual, _ = solve_dual(x, targets, c, ridge)
    assert float(residual) <= 1e-5
    kernel = x @ x.T + ridge * np.eye(n)

    def dual(a, kernel=kernel):
      a = a.reshape(n, k)
      return 0.5 * np.sum(a * (kernel @ a)) - np.sum(a * targets)

    reference = scipy.optimize.minimize(
        dual, np.zeros(n * k), method="SLSQP", bounds=[(None, c * t) for t in targets.ravel()],
        constraints=[{"type": "eq", "fun": lambda a: a.reshape(n, k).sum(1)}],
        options={"ftol": 1e-14, "maxiter": 2000})
    assert reference.success
    np.testing.assert_allclose(alpha, reference.x.reshape(n, k), atol=5e-5)
  # ridge=0 is the textbook Crammer-Singer SVM: W = X^T alpha solves the primal
  # min |W|^2 / 2 + C sum xi  s.t.  (W x_n)_{y_n} - (W x_n)_k >= 1 - delta_{y_n k} - xi_n.
  d = x.shape[1]

  def margins(z):
    scores = x @ z[:d * k].reshape(d, k)
    true = scores[np.arange(n), labels][:, None]
    return (true - scores - (1 - targets) + z[d * k:, None]).ravel()

  primal = scipy.optimize.minimize(
      lambda z: 0.5 * np.sum(z[:d * k] ** 2) + c * np.sum(z[d * k:]), np.zeros(d * k + n),
      method="SLSQP", constraints=[{"type": "ineq", "fun": margins}],
      options={"ftol": 1e-14, "maxiter": 2000})
  assert primal.success
  np.testing.assert_allclose(x.T @ np.asarray(alpha), primal.x[:d * k].reshape(d, k), atol=5e-5)


def test_metaoptnet_meta_gradient_matches_finite_differences():
  learner = metajax.metaoptnet(tanh_classifier(), ways=WAYS, C=0.5, tol=1e-5, max_iters=5000)
  task = first(classification_tasks())
  _, metrics = task_grad(learner, task)
  assert float(metrics["svm_residual"]) <= 1e-5 and float(metrics["implicit_residual"]) < 1e-4
  check_meta_gradient(learner, learner.init(), task, jax.random.key(0), directions=3, eps=1e-2,
                      rtol=1e-2, atol=1e-4)


def test_metaoptnet_reports_and_raises_on_non_convergence():
  task = first(classification_tasks())
  with pytest.raises(Exception, match="did not reach tol=1e-06 in max_iters=3"):
    learner = metajax.metaoptnet(tanh_classifier(), ways=WAYS, C=0.5, tol=1e-6, max_iters=3)
    jax.block_until_ready(task_grad(learner, task))
  reported = metajax.metaoptnet(tanh_classifier(), ways=WAYS, C=0.5, tol=1e-6, max_iters=3,
                                on_failure="report")
  _, metrics = task_grad(reported, task)
  assert float(metrics["svm_residual"]) > 1e-6
