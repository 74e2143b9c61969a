"""The value every algorithm returns: a small set of pure functions of one task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from metajax.core.types import Array, PRNGKey, PyTree, Task

Metrics = dict[str, Array]


class MetaLearner(NamedTuple):
  """A meta-learning algorithm as pure functions of **one** task.

  The task axis is added once, by :func:`metajax.make_meta_step`.

  Attributes:
    init: ``init() -> meta_params``, the initial meta-parameters pytree.
    task_loss: ``task_loss(meta_params, task, key, step) -> (loss, metrics)``,
      the differentiable outer objective of one task; ``step`` is the outer
      iteration (used by schedules such as MAML++'s multi-step loss).
    task_grad: ``task_grad(meta_params, task, key, step) -> (grads, metrics)``,
      the meta-gradient of one task (``jax.grad`` of ``task_loss`` for most
      algorithms; Reptile's is ``params - adapted``). ``metrics["loss"]`` is set.
    adapt: ``adapt(meta_params, support_x, support_y, key, *, steps=None) ->
      adapted``, task-specific state (adapted weights, prototypes, ...).
    predict: ``predict(meta_params, adapted, x) -> outputs``.
    evaluate: ``evaluate(meta_params, task, key, *, steps=None) -> metrics`` on
      the query set after adapting on the support set (``steps`` overrides the
      number of test-time inner steps, where the algorithm has any).
    check_task: ``check_task(task_batch)`` raises on bad concrete input (labels
      out of range, mismatched shapes) before anything is compiled.
    name: the algorithm's name.
    supports_masks: whether padded episodes (``Task.support_mask`` / ``query_mask``, see
      ``metajax.core.masks``) give exactly the unpadded episode's loss, metrics and
      meta-gradient. ``False`` (the default for a new learner) makes ``check_task`` and the
      meta-step refuse masked tasks with an error rather than train on padding.
    predict_query: ``predict_query(meta_params, support_x, support_y, query_x, key, *,
      steps=None) -> outputs`` for learners whose ``evaluate`` does not score the query as
      ``predict(adapt(...))`` would: metric and amortized learners with transductive BatchNorm
      embed support and query as **one** batch. ``None`` (the default) means
      ``predict(adapt(...))`` is what ``evaluate`` scores. Call :meth:`predict_task`, which
      picks the right one.
    state_keys: top-level keys of the meta-parameters (a dict) that hold learner *state*, not
      parameters: values the meta-step carries but the outer optimizer must not touch, e.g.
      MAML++'s per-step BatchNorm running statistics. For these keys ``task_grad`` returns the
      task's *new value* of the state instead of a gradient; the meta-step stores its mean over
      the task batch and passes only the other keys to the outer optimizer (see
      :func:`metajax.init_meta_state`). ``()`` (the default): every key is a parameter.

  Example:
    MAML on ``y = w * x`` with ``w = 1``, one task with target ``y = 2x``: one inner step of
    0.1 moves ``w`` to 1.2, so the query loss is ``(1.2 - 2) ** 2 = 0.64``.

    >>> import metajax, jax, jax.numpy as jnp
    >>> model = metajax.from_function(lambda p, x: x * p["w"], {"w": jnp.ones(1)})
    >>> learner = metajax.maml(model, inner_lr=0.1, loss="mse")
    >>> x = jnp.ones((4, 1))
    >>> task = metajax.Task(x, 2 * x, x, 2 * x)
    >>> meta_params = learner.init()
    >>> adapted = learner.adapt(meta_params, task.support_x, task.support_y, jax.random.key(0))
    >>> learner.predict(meta_params, adapted, task.query_x)[0]
    Array([1.2], dtype=float32)
    >>> grads, metrics = learner.task_grad(meta_params, task, jax.random.key(0), 0)
    >>> round(float(metrics["loss"]), 4), round(float(grads["model"]["w"][0]), 4)
    (0.64, -1.28)
  """

  init: Callable[[], PyTree]
  task_loss: Callable[[PyTree, Task, PRNGKey, Array], tuple[Array, Metrics]]
  task_grad: Callable[[PyTree, Task, PRNGKey, Array], tuple[PyTree, Metrics]]
  adapt: Callable[..., Any]
  predict: Callable[[PyTree, Any, Array], Array]
  evaluate: Callable[..., Metrics]
  check_task: Callable[[Task], None]
  name: str
  supports_masks: bool = False
  predict_query: Callable[..., Array] | None = None
  state_keys: tuple[str, ...] = ()

  def predict_task(self, meta_params: PyTree, support_x: Array, support_y: Array,
                   query_x: Array, key: PRNGKey | None = None, *,
                   steps: int | None = None) -> Array:
    """The outputs on ``query_x`` of one task, exactly as :attr:`evaluate` scores them.

    Args:
      meta_params: the meta-parameters.
      support_x: ``[n_support, ...]`` support inputs.
      support_y: ``[n_support]`` integer labels (or targets, for regression).
      query_x: ``[n_query, ...]`` query inputs.
      key: the task's key (stochastic learners draw from it), or ``None``.
      steps: test-time inner steps (gradient-based learners; default: the learner's).

    Returns:
      ``[n_query, ways]`` logits (``[n_query, ...]`` outputs for regression), the same values
      ``evaluate`` computes its accuracy and loss from: ``predict_query`` where the learner has
      one, else ``predict(meta_params, adapt(meta_params, support_x, support_y, key), query_x)``.

    Example:
      >>> import metajax, jax, jax.numpy as jnp
      >>> model = metajax.from_function(lambda p, x: x * p["w"], {"w": jnp.ones(1)})
      >>> learner = metajax.maml(model, inner_lr=0.1, loss="mse")
      >>> x = jnp.ones((4, 1))
      >>> learner.predict_task(learner.init(), x, 2 * x, x, jax.random.key(0))[0]
      Array([1.2], dtype=float32)
    """
    if self.predict_query is not None:
      return self.predict_query(meta_params, support_x, support_y, query_x, key, steps=steps)
    adapted = self.adapt(meta_params, support_x, support_y, key, steps=steps)
    return self.predict(meta_params, adapted, query_x)


def grad_of_task_loss(task_loss: Callable[..., tuple[Array, Metrics]]) -> Callable[..., Any]:
  """Builds ``task_grad`` as the gradient of ``task_loss`` with ``metrics["loss"]`` set."""
  value_and_grad = jax.value_and_grad(task_loss, has_aux=True)

  def task_grad(meta_params, task, key, step):
    (loss, metrics), grads = value_and_grad(meta_params, task, key, step)
    return grads, {**metrics, "loss": loss}

  return task_grad
