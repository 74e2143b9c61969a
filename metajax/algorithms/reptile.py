"""Reptile: move the initialisation toward the task-adapted weights."""

from __future__ import annotations

import jax
import optax

from metajax.algorithms import _gradient_based
from metajax.core._checks import check_positive
from metajax.core.learner import Model
from metajax.core.losses import Loss
from metajax.core.meta_learner import MetaLearner


def reptile(
    model: Model,
    *,
    inner_lr: float = 0.001,
    steps: int = 5,
    inner_optimizer: optax.GradientTransformation | None = None,
    loss: str | Loss = "cross_entropy",
    eval_steps: int | None = None,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Reptile: the meta-gradient of a task is ``theta - theta'``.

  ``theta'`` is the result of ``steps`` inner updates on the support set. Pair
  it with ``optax.sgd(meta_step_size)`` as the outer optimizer to get the
  paper's update ``theta <- theta + epsilon * mean(theta' - theta)``
  (see :func:`reptile_outer_optimizer`). No second-order terms are computed.

  Args:
    model: the learner.
    inner_lr: inner step size (Adam's with the default inner optimizer).
    steps: inner steps on the support set.
    inner_optimizer: optax transform for the inner loop; default
      ``optax.adam(inner_lr, b1=0)`` as in Nichol et al. (2018), Table 3.
    loss: task loss.
    eval_steps: inner steps at test time (default ``steps``).
    batch_norm: BatchNorm policy.

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"model": params}``.

  References:
    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018.
    https://arxiv.org/abs/1803.02999
  """
  if inner_optimizer is None:
    inner_optimizer = optax.adam(check_positive(inner_lr, "inner_lr"), b1=0.0)
  base = _gradient_based.build(
      model, name="reptile", loss=loss, steps=steps, eval_steps=eval_steps, first_order=True,
      remat=False, batch_norm=batch_norm, adapt_filter=None, init_extra=lambda adapted: {},
      inner_optimizer=lambda meta_params, n_steps: inner_optimizer, masks=True,
  )
  train_steps = _gradient_based.check_steps(steps)
  resolved = _gradient_based.resolve_loss(loss)

  def task_grad(meta_params, task, key, step):
    del step
    adapted = base.adapt(meta_params, task.support_x, task.support_y, key, steps=train_steps,
                         mask=task.support_mask)
    adapted = jax.lax.stop_gradient(adapted)
    grads = {"model": jax.tree.map(lambda p, a: p - a, meta_params["model"], adapted)}
    logits = base.predict(meta_params, adapted, task.query_x, task.query_mask)
    metrics = {"loss": resolved.value(logits, task.query_y, task.query_mask),
               **resolved.metric_values(logits, task.query_y, task.query_mask)}
    return grads, metrics

  def task_loss(meta_params, task, key, step):
    """Query loss after adaptation (Reptile does not differentiate it)."""
    grads_metrics = task_grad(meta_params, task, key, step)[1]
    return grads_metrics["loss"], grads_metrics

  return base._replace(task_grad=task_grad, task_loss=task_loss)


def reptile_outer_optimizer(meta_step_size: float = 1.0, *, anneal_steps: int | None = None
                            ) -> optax.GradientTransformation:
  """Outer optimizer for Reptile: SGD with step ``epsilon``, optionally annealed to 0.

  Args:
    meta_step_size: epsilon, the fraction of the way toward ``theta'``.
    anneal_steps: if set, epsilon decays linearly to 0 over this many steps
      (Nichol et al. 2018 anneal it linearly over training).

  Returns:
    ``optax.sgd`` with a constant or linear schedule.

  Raises:
    ValueError: when ``meta_step_size`` is not positive.

  Example:
    Reptile's meta-gradient is ``theta - theta'``; a step of 0.5 moves half way toward ``theta'``:

    >>> import jax.numpy as jnp
    >>> outer = reptile_outer_optimizer(0.5)
    >>> theta, adapted = jnp.array(1.0), jnp.array(3.0)
    >>> updates, _ = outer.update(theta - adapted, outer.init(theta))
    >>> float(theta + updates)
    2.0

  References:
    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018, Algorithm 2.
    https://arxiv.org/abs/1803.02999
  """
  meta_step_size = check_positive(meta_step_size, "meta_step_size")
  if anneal_steps:
    return optax.sgd(optax.linear_schedule(meta_step_size, 0.0, anneal_steps))
  return optax.sgd(meta_step_size)
