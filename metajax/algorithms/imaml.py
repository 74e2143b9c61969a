"""iMAML: the meta-gradient of a proximal inner problem by the implicit function theorem."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms._gradient_based import (
    check_batch_norm,
    check_model,
    make_output_checker,
    mask_refusal,
)
from metajax.core import implicit
from metajax.core._checks import check_positive, check_steps
from metajax.core.inner_loop import inner_loop
from metajax.core.learner import Model
from metajax.core.losses import Loss, resolve_loss
from metajax.core.masks import apply_model
from metajax.core.meta_learner import MetaLearner


def imaml(
    model: Model,
    *,
    lam: float = 1.0,
    inner_lr: float = 0.1,
    steps: int = 16,
    inner_optimizer: optax.GradientTransformation | None = None,
    solver: str = "cg",
    cg_steps: int = 5,
    tol: float = 1e-6,
    neumann_step: float | None = None,
    max_residual: float = 1.0,
    on_failure: str = "raise",
    loss: str | Loss = "cross_entropy",
    eval_steps: int | None = None,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Implicit MAML: meta-gradients ``(I + H / lambda)^{-1} g`` that never backprop the inner loop.

  Each task adapts by minimising the proximal objective
  ``support_loss(phi) + lambda / 2 * |phi - theta|^2`` from ``phi = theta`` with ``steps``
  updates of an optax optimizer (:func:`metajax.inner_loop`). At its minimiser ``phi*``,
  ``d phi* / d theta = (I + H / lambda)^{-1}`` with ``H`` the support-loss Hessian at ``phi*``,
  so the meta-gradient is ``(I + H / lambda)^{-1} grad query_loss(phi*)``, found by conjugate
  gradient on Hessian-vector products (``metajax.core.implicit``). Memory does not grow with
  ``steps``: only ``phi*`` is kept for the backward pass.

  The meta-gradient is exact for the *minimiser*; it approximates the derivative of the
  ``steps``-step loop as far as the loop converges (``metrics["inner_grad_norm"]`` is the norm
  of the proximal objective's gradient at ``phi``) and CG does (``metrics["implicit_residual"]``
  is ``|A u - g| / |g|``, ``A = I + H / lambda``). A residual above ``max_residual`` (``lambda``
  below the most negative curvature of the support loss makes ``A`` indefinite; too few CG
  steps) raises, see ``metajax.core.implicit.check_residual``.

  Masked (padded) episodes are supported: the proximal support loss, so every Hessian-vector
  product of the implicit solve, and the query loss and metrics count only the real examples.

  Args:
    model: the learner.
    lam: the proximal regulariser ``lambda > 0`` (larger: closer to ``theta``, better
      conditioned).
    inner_lr: inner SGD step size (unless ``inner_optimizer``).
    steps: inner steps during meta-training.
    inner_optimizer: any optax transformation instead of ``sgd(inner_lr)``.
    solver: ``"cg"`` (default), ``"neumann"`` or ``"lu"`` (small models only).
    cg_steps: CG iterations (Neumann terms); the paper uses 5.
    tol: CG stops earlier at this tolerance.
    neumann_step: the Neumann series' step ``eta``: it solves ``(H + lambda I) u = g`` as
      ``eta * sum_j (I - eta (H + lambda I))^j g``. Default ``inner_lr`` (the series then
      converges where the inner SGD loop does); required with a custom ``inner_optimizer``.
    max_residual: largest acceptable relative residual of the linear solve. The default 1 is
      where the solve is no better than returning zero; a truncated CG (the paper's 5 steps)
      typically leaves 0.3-0.6 on Conv-4 Omniglot at initialisation.
    on_failure: ``"raise"`` or ``"report"`` (only ``metrics["implicit_residual"]``).
    loss: ``"cross_entropy"``, ``"mse"`` or a :class:`metajax.Loss`.
    eval_steps: inner steps at test time (default ``steps``).
    batch_norm: ``"transductive"`` or ``"frozen"`` (see ``metajax.core.learner``).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"model": params}``.

  Example:
    >>> import metajax, jax
    >>> model = metajax.models.mlp_model([40, 40], 1, jax.random.key(0), input_dim=1)
    >>> learner = metajax.imaml(model, lam=2.0, inner_lr=0.01, steps=10, loss="mse")
    >>> sorted(learner.init())
    ['model']

  References:
    Rajeswaran, Finn, Kakade & Levine, "Meta-Learning with Implicit Gradients", NeurIPS 2019.
    https://arxiv.org/abs/1909.04630
  """
  model = check_model(model)
  lam = check_positive(lam, "lam")
  steps = check_steps(steps, minimum=1)
  eval_steps = steps if eval_steps is None else check_steps(eval_steps, "eval_steps")
  if inner_optimizer is None:
    inner_optimizer = optax.sgd(check_positive(inner_lr, "inner_lr"))
    if neumann_step is None:
      neumann_step = inner_lr
  elif solver == "neumann" and neumann_step is None:
    raise ValueError(
        "solver='neumann' with a custom inner_optimizer needs neumann_step (the series' step "
        "eta, at most 1 / (largest curvature + lam)); pass e.g. neumann_step=0.01."
    )
  implicit.check_solver(solver, cg_steps, tol, neumann_step)
  on_failure, max_residual = implicit.check_failure_policy(on_failure, max_residual)
  train = check_batch_norm(batch_norm)
  loss = resolve_loss(loss)
  state = model.state

  def outputs(params, x, example_mask=None):
    return apply_model(model, params, x, train=train, mask=example_mask, state=state)

  def proximal_objective(phi, theta, data):
    # A masked support loss: the Hessian-vector products of the implicit solve see only the
    # real examples of a padded episode.
    support_x, support_y, support_mask = data
    distance = sum(jnp.sum(jnp.square(p - t)) for p, t in
                   zip(jax.tree.leaves(phi), jax.tree.leaves(theta)))
    support_loss = loss.value(outputs(phi, support_x, support_mask), support_y, support_mask)
    return support_loss + 0.5 * lam * distance

  def run_inner(theta, data, n_steps):
    theta = jax.lax.stop_gradient(theta)
    return inner_loop(lambda phi: proximal_objective(phi, theta, data), theta, inner_optimizer,
                      steps=n_steps)

  root = implicit.implicit_argmin(
      lambda theta, data: run_inner(theta, data, steps).params, proximal_objective,
      solver=solver, linear_steps=cg_steps, tol=tol, neumann_step=neumann_step)

  def init():
    return {"model": jax.tree.map(jnp.array, model.params)}

  def loss_with_probe(meta_params, probe, task):
    data = (task.support_x, task.support_y, task.support_mask)
    theta = meta_params["model"]
    adapted = root(theta, data, probe)
    logits = outputs(adapted, task.query_x, task.query_mask)
    query_loss = loss.value(logits, task.query_y, task.query_mask)
    frozen = jax.lax.stop_gradient((adapted, theta))
    stationarity = jax.grad(proximal_objective)(*frozen, data)
    metrics = {"query_loss": query_loss,
               **loss.metric_values(logits, task.query_y, task.query_mask),
               "inner_grad_norm": implicit._tree_norm(stationarity)}
    return query_loss, metrics

  task_loss, task_grad = implicit.implicit_task_functions(
      loss_with_probe, max_residual=max_residual, on_failure=on_failure,
      what=f"imaml (lam={lam:g}, solver={solver!r}, cg_steps={cg_steps})",
      fix="Raise lam (the system I + H/lam is indefinite when lam is below the most negative "
          "curvature of the support loss), raise cg_steps, or raise max_residual if a "
          "truncated solve is intended.")

  def adapt(meta_params, support_x, support_y, key=None, *, steps=None, mask=None):
    del key
    n_steps = eval_steps if steps is None else check_steps(steps)
    return run_inner(meta_params["model"], (support_x, support_y, mask), n_steps).params

  def predict(meta_params, adapted, x, mask=None):
    del meta_params
    return outputs(adapted, x, mask)

  def evaluate(meta_params, task, key=None, *, steps=None):
    adapted = adapt(meta_params, task.support_x, task.support_y, key, steps=steps,
                    mask=task.support_mask)
    logits = outputs(adapted, task.query_x, task.query_mask)
    return {"loss": loss.value(logits, task.query_y, task.query_mask),
            **loss.metric_values(logits, task.query_y, task.query_mask)}

  return MetaLearner(init, task_loss, task_grad, adapt, predict, evaluate,
                     make_output_checker(model, loss, train, masks=True, name="imaml"), "imaml",
                     not mask_refusal(model, loss, train, True))
