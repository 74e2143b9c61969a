"""MetaOptNet: a Crammer-Singer multi-class SVM head per task, differentiated implicitly."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.algorithms import _metric
from metajax.algorithms._gradient_based import check_batch_norm
from metajax.core import implicit
from metajax.core._checks import check_positive, check_steps
from metajax.core.learner import Model
from metajax.core.losses import accuracy, softmax_cross_entropy
from metajax.core.masks import apply_model, with_masks
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array


class SVMHead(NamedTuple):
  """MetaOptNet's task-specific state.

  Attributes:
    weights: ``[d, ways]`` SVM weights ``W = X^T alpha``.
    counts: ``[ways]`` support examples per class.
    residual: the dual solver's final projected-gradient residual (see
      :func:`crammer_singer_dual`).
  """

  weights: Array
  counts: Array
  residual: Array


def project_rows(values: Array, upper: Array, present: Array) -> Array:
  """Euclidean projection of each row onto ``{a : a <= upper, a[~present] = 0, sum(a) = 0}``.

  The projection is ``min(v - mu, upper)`` on the present entries, with ``mu`` the root of the
  non-increasing piecewise-linear ``s(mu) = sum min(v - mu, upper)``. An entry is clipped at
  its bound exactly when ``s`` at its breakpoint ``v - upper`` is ``<= 0``; with that set fixed,
  ``mu`` has a closed form, so the projection is exact (no bisection) and differentiable.

  Args:
    values: ``[n, k]`` points.
    upper: ``[n, k]`` upper bounds.
    present: ``[k]`` bool, the coordinates that may be non-zero (at least one per row whose
      bound is positive).

  Returns:
    ``[n, k]`` projections.
  """
  breakpoints = values - upper
  # s(b_j) for every breakpoint j of each row: [n, k (j), k (entries)].
  terms = jnp.minimum(values[:, None, :] - breakpoints[:, :, None], upper[:, None, :])
  s_at = jnp.sum(jnp.where(present, terms, 0.0), axis=-1)
  clipped = jax.lax.stop_gradient((s_at <= 0) & present)
  free = present & ~clipped
  n_free = jnp.maximum(jnp.sum(free, axis=-1, keepdims=True), 1)
  mu = (jnp.sum(jnp.where(free, values, 0.0), -1, keepdims=True)
        + jnp.sum(jnp.where(clipped, upper, 0.0), -1, keepdims=True)) / n_free
  return jnp.where(present, jnp.where(clipped, upper, values - mu), 0.0)


class DualProblem(NamedTuple):
  """The data of one Crammer-Singer dual (everything but the Gram matrix)."""

  targets: Array  # [n, k] one-hot labels
  upper: Array  # [n, k] C * targets
  present: Array  # [k] classes with a support example
  step: Array  # projected-gradient step 1 / L


def _dual_gradient(alpha: Array, gram: Array, problem: DualProblem, ridge: float) -> Array:
  return gram @ alpha + ridge * alpha - problem.targets


def _fixed_point_residual(alpha: Array, gram: Array, problem: DualProblem, ridge: float) -> Array:
  """``alpha - P(alpha - step * grad)``: zero exactly at the dual optimum (the KKT conditions)."""
  moved = alpha - problem.step * _dual_gradient(alpha, gram, problem, ridge)
  return alpha - project_rows(moved, problem.upper, problem.present)


def crammer_singer_dual(
    gram: Array,
    problem: DualProblem,
    *,
    ridge: float,
    max_iters: int,
    tol: float,
) -> tuple[Array, Array, Array]:
  """Solves the Crammer-Singer dual by accelerated projected gradient (FISTA, adaptive restart).

  ``min_alpha 1/2 sum_k alpha_k^T (G + ridge I) alpha_k - sum_n alpha[n, y_n]`` subject to
  ``alpha[n] <= C e_{y_n}`` and ``sum_k alpha[n, k] = 0`` for every support example ``n``.

  Args:
    gram: ``[n, n]`` support Gram matrix ``X X^T``.
    problem: labels, bounds, present classes and the step ``1 / L``.
    ridge: the dual ridge added to ``G``.
    max_iters: iteration cap.
    tol: stop when the projected-gradient residual ``max |alpha - P(alpha - step grad)| / step``
      falls below it.

  Returns:
    ``(alpha [n, k], residual, iterations)``.
  """

  def residual_of(alpha):
    return jnp.max(jnp.abs(_fixed_point_residual(alpha, gram, problem, ridge))) / problem.step

  def cond(carry):
    _, _, _, iteration, residual = carry
    return (iteration < max_iters) & (residual > tol)

  def body(carry):
    alpha, momentum_point, t, iteration, _ = carry
    moved = momentum_point - problem.step * _dual_gradient(momentum_point, gram, problem, ridge)
    new_alpha = project_rows(moved, problem.upper, problem.present)
    new_t = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
    # Restart the momentum when it points uphill (O'Donoghue & Candes, 2015).
    restart = jnp.sum((momentum_point - new_alpha) * (new_alpha - alpha)) > 0
    new_t = jnp.where(restart, 1.0, new_t)
    point = jnp.where(restart, new_alpha, new_alpha + ((t - 1.0) / new_t) * (new_alpha - alpha))
    return new_alpha, point, new_t, iteration + 1, residual_of(new_alpha)

  alpha0 = jnp.zeros_like(problem.targets)
  init = (alpha0, alpha0, jnp.ones([], gram.dtype), jnp.zeros([], jnp.int32), residual_of(alpha0))
  alpha, _, _, iterations, residual = jax.lax.while_loop(cond, body, init)
  return alpha, residual, iterations


def metaoptnet(
    embedding: Model,
    *,
    ways: int | None = None,
    C: float = 0.1,  # noqa: N803 (the SVM's name for it)
    dual_ridge: float = 1.0,
    max_iters: int = 1000,
    tol: float = 1e-3,
    on_failure: str = "raise",
    batch_norm: str = "transductive",
    init_scale: float = 1.0,
) -> MetaLearner:
  """MetaOptNet-SVM: per task, a Crammer-Singer multi-class SVM on the support embeddings.

  The dual (:func:`crammer_singer_dual`) is solved to tolerance on the support Gram matrix
  ``G = X X^T``; the weights are ``W = X^T alpha`` and the query logits ``scale * X_q W``, with
  ``scale`` meta-learned. The solver is not differentiated: ``alpha*(G)`` gets its gradient from
  the KKT conditions in fixed-point form, ``alpha = P(alpha - step * grad f(alpha))``, by the
  implicit function theorem (``metajax.core.implicit.implicit_root`` with a dense solve:
  the system has ``n_support * ways`` unknowns). ``dual_ridge`` adds ``ridge * I`` to ``G``, as
  the authors' released code does (``1.0``), which makes the dual strongly convex so ``alpha*``
  and its derivative are unique; ``dual_ridge=0`` is the textbook SVM.

  Non-convergence is reported, not silent: ``metrics["svm_residual"]`` is the projected-gradient
  residual, and with ``on_failure="raise"`` a residual above ``tol`` after ``max_iters`` raises
  (from inside ``jit``, see ``metajax.core.implicit.check_residual``), as does a backward
  solve with relative residual above ``1e-3`` (``metrics["implicit_residual"]``).

  Masked (padded) episodes are supported: a padded support example has a zero box bound, so
  its dual variables are exactly zero and it drops out of the SVM and its implicit gradient;
  the query loss and accuracy count only real queries.

  Args:
    embedding: the embedding network (flattened outputs).
    ways: static class width, see :func:`metajax.protonet`.
    C: the SVM's slack penalty (0.1 in the paper's code).
    dual_ridge: ridge added to the support Gram matrix (``>= 0``).
    max_iters: dual solver iteration cap.
    tol: dual solver tolerance on the projected gradient (the gradient is ``O(1)``).
    on_failure: ``"raise"`` or ``"report"``.
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.
    init_scale: initial logit scale.

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding", "scale"}``; ``adapt``
    returns an :class:`SVMHead`.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> sorted(metajax.metaoptnet(embedding).init())
    ['embedding', 'scale']

  References:
    Lee, Maji, Ravichandran & Soatto, "Meta-Learning with Differentiable Convex Optimization",
    CVPR 2019. https://arxiv.org/abs/1904.03758
    Crammer & Singer, "On the Algorithmic Implementation of Multiclass Kernel-based Vector
    Machines", JMLR 2001.
  """
  C = check_positive(C, "C")  # noqa: N806
  if not isinstance(dual_ridge, int | float) or isinstance(dual_ridge, bool) or dual_ridge < 0:
    raise ValueError(f"dual_ridge must be a number >= 0, got {dual_ridge!r}; 1.0 is the "
                     "released MetaOptNet setting, 0 the textbook SVM.")
  ridge = float(dual_ridge)
  max_iters = check_steps(max_iters, "max_iters", minimum=1)
  tol = check_positive(tol, "tol")
  on_failure, _ = implicit.check_failure_policy(on_failure, 1.0)
  init_scale = check_positive(init_scale, "init_scale")
  max_backward_residual = 1e-3

  def solve(gram, problem):
    return crammer_singer_dual(gram, problem, ridge=ridge, max_iters=max_iters, tol=tol)[0]

  root = implicit.implicit_root(
      solve, lambda alpha, gram, problem: _fixed_point_residual(alpha, gram, problem, ridge),
      solver="lu")

  def init_extra():
    return {"scale": jnp.asarray(init_scale, jnp.float32)}

  def fit_head(features, labels, ways, probe=None):
    targets = _metric.one_hot(labels, ways)
    counts = targets.sum(axis=0)
    gram = features @ features.T
    lipschitz = jnp.linalg.eigvalsh(jax.lax.stop_gradient(gram))[-1] + ridge
    problem = DualProblem(targets, C * targets, counts > 0, 1.0 / jnp.maximum(lipschitz, 1e-12))
    alpha = root(gram, problem, probe)
    frozen = jax.lax.stop_gradient((alpha, gram))
    residual = jnp.max(jnp.abs(_fixed_point_residual(*frozen, problem, ridge))) / problem.step
    implicit.check_residual(
        residual, max_residual=tol, on_failure=on_failure,
        what=f"metaoptnet SVM dual (C={C:g}, dual_ridge={ridge:g})",
        quantity="dual solver's projected-gradient residual",
        fix=f"The dual solver did not reach tol={tol:g} in max_iters={max_iters}; raise "
            "max_iters, loosen tol, or raise dual_ridge (better conditioned).")
    return SVMHead(features.T @ alpha, counts, residual)

  def fit(meta_params, features, labels, ways):
    del meta_params
    return fit_head(features, labels, ways)

  def score(meta_params, head, features):
    logits = meta_params["scale"] * (features @ head.weights)
    return _metric.mask_absent(logits, head.counts)

  learner = _metric.build(embedding, name="metaoptnet", ways=ways, batch_norm=batch_norm,
                          flatten=True, init_extra=init_extra, fit=fit, score=score, masks=True)
  train = check_batch_norm(batch_norm)

  def loss_with_probe(meta_params, probe, task):
    # Padded support rows (as in _metric.build) get zero features and the out-of-range label
    # ``w``: zero one-hot targets, so a zero box bound ``C * targets`` forces their dual
    # variables to exactly 0, and their zero Gram rows/columns decouple them from the real
    # rows in both the dual solve and its implicit (KKT) derivative.
    n_support = task.support_x.shape[0]
    w = ways or n_support
    _, support_y, _, _, support_mask, query_mask = with_masks(task)
    episode_mask = jnp.concatenate([support_mask, query_mask]) if task.is_masked else None
    x = jnp.concatenate([task.support_x, task.query_x])
    features = apply_model(embedding, meta_params["embedding"], x, train=train, mask=episode_mask)
    features = features.reshape(features.shape[0], -1)
    support_features = jnp.where(support_mask[:, None], features[:n_support], 0.0)
    head = fit_head(support_features, jnp.where(support_mask, support_y, w), w, probe)
    logits = score(meta_params, head, features[n_support:])
    query_loss = softmax_cross_entropy(logits, task.query_y, task.query_mask)
    return query_loss, {"accuracy": accuracy(logits, task.query_y, task.query_mask),
                        "svm_residual": head.residual}

  task_loss, task_grad = implicit.implicit_task_functions(
      loss_with_probe, max_residual=max_backward_residual, on_failure=on_failure,
      what="metaoptnet implicit gradient of the SVM dual",
      fix="The KKT system is near-singular: raise dual_ridge (the support Gram matrix is "
          "rank-deficient when the embedding is narrower than the support set).")

  return learner._replace(task_loss=task_loss, task_grad=task_grad)
