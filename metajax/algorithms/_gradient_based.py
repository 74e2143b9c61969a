"""Shared machinery of the gradient-based family (MAML, FOMAML, ANIL, Meta-SGD, MAML++)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.core._checks import check_labels, check_steps, check_task_shapes
from metajax.core.inner_loop import inner_loop
from metajax.core.learner import Model
from metajax.core.losses import Loss, resolve_loss
from metajax.core.masks import apply_model, check_masks, padding_is_invisible
from metajax.core.meta_learner import MetaLearner, grad_of_task_loss
from metajax.core.types import PyTree, Task

BATCH_NORM_POLICIES = ("transductive", "frozen")


def check_batch_norm(batch_norm: str) -> bool:
  """Returns the ``train`` flag for a BatchNorm policy name."""
  if batch_norm not in BATCH_NORM_POLICIES:
    raise ValueError(
        f"batch_norm must be one of {BATCH_NORM_POLICIES}, got {batch_norm!r}: 'transductive' "
        "normalises each support/query batch by its own statistics (MAML), 'frozen' uses the "
        "stored statistics."
    )
  return batch_norm == "transductive"


def check_model(model: Any) -> Model:
  if not isinstance(model, Model):
    raise TypeError(
        f"model must be a metajax.Model, got {type(model).__name__}; wrap it with "
        "metajax.from_nnx(module), metajax.from_linen(module, x, key) or "
        "metajax.from_function(fn, params)."
    )
  return model


def adapt_mask(params: PyTree, adapt_filter: Callable[[tuple[str, ...]], bool] | None) -> PyTree:
  """Boolean pytree: which leaves the inner loop adapts (all when no filter)."""
  if adapt_filter is None:
    return jax.tree.map(lambda _: True, params)

  def keys(path):
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)

  mask = jax.tree_util.tree_map_with_path(lambda path, _: bool(adapt_filter(keys(path))), params)
  if not any(jax.tree.leaves(mask)):
    raise ValueError("adapt_filter selects no parameter to adapt; check the names it matches.")
  return mask


def split(params: PyTree, mask: PyTree) -> tuple[PyTree, PyTree]:
  """Splits params into (adapted, frozen); unselected leaves become None."""
  adapted = jax.tree.map(lambda m, p: p if m else None, mask, params)
  frozen = jax.tree.map(lambda m, p: None if m else p, mask, params)
  return adapted, frozen


def merge(adapted: PyTree, frozen: PyTree, mask: PyTree) -> PyTree:
  return jax.tree.map(lambda m, a, f: a if m else f, mask, adapted, frozen,
                      is_leaf=lambda x: x is None)


def make_output_checker(model: Model, loss: Loss, train: bool, *, masks: bool = False,
                        name: str = "this learner") -> Callable[[Task], None]:
  """Host-side task check: shapes, model output against the loss, label range.

  ``masks``: whether the learner handles masked (padded) tasks; if not, they raise.
  """
  ways_by_signature: dict[tuple, int] = {}
  reason = mask_refusal(model, loss, train, masks)

  def check_task(tasks: Task) -> None:
    batched = _is_batched(tasks, loss)
    check_masks(tasks, supported=not reason, name=name, reason=reason)
    check_task_shapes(tasks, batched=batched, masks=True, name=name)
    one = jax.tree.map(lambda a: a[0], tasks) if batched else tasks
    signature = tuple((np.shape(a), getattr(a, "dtype", None)) for a in one)
    if signature not in ways_by_signature:
      def support_loss(params, state, task):
        out = apply_model(model, params, task.support_x, train=train, mask=task.support_mask,
                          state=state)
        return loss.value(out, task.support_y, task.support_mask), out

      # Traces the loss on one task's shapes: its own shape rules raise here, before any compile.
      _, out = jax.eval_shape(support_loss, model.params, model.state, one)
      ways_by_signature[signature] = out.shape[-1]
    if loss.classification:
      ways = ways_by_signature[signature]
      if ways < 2:
        raise ValueError(
            f"a classifier needs at least 2 outputs (ways >= 2), but the model gives {ways}: "
            "with one class the softmax is 1 whatever the input, so the loss is 0 and accuracy "
            "100%. Build the model with outputs=ways >= 2, or use loss='mse' for regression."
        )
      check_labels(tasks.support_y, ways, "support_y")
      check_labels(tasks.query_y, ways, "query_y")

  return check_task


def mask_refusal(model: Model, loss: Loss, train: bool, masks: bool) -> str:
  """Why a gradient-based learner cannot take masked tasks ("" when it can)."""
  if not masks:
    return "it was built without mask support"
  if not loss.supports_masks:
    return "its Loss has no masked_fn / masked_metrics"
  if not padding_is_invisible(model, train):
    return ("its model has BatchNorm state in transductive mode but apply() takes no mask=; "
            "use batch_norm='frozen' or a model whose apply takes mask=")
  return ""


def _is_batched(tasks: Task, loss: Loss) -> bool:
  """Classification labels are [n] per task; regression targets [n, d]."""
  label_rank = 1 if loss.classification else 2
  return np.ndim(tasks.support_y) > label_rank


def build(
    model: Model,
    *,
    name: str,
    loss: str | Loss,
    steps: int,
    eval_steps: int | None,
    first_order: bool,
    remat: bool,
    batch_norm: str,
    adapt_filter: Callable[[tuple[str, ...]], bool] | None,
    init_extra: Callable[[PyTree], PyTree],
    inner_optimizer: Callable[[PyTree, int], optax.GradientTransformation],
    step_weights: Callable[[Any, int], jax.Array] | None = None,
    masks: bool = False,
) -> MetaLearner:
  """Builds a gradient-based :class:`MetaLearner`.

  Meta-parameters are ``{"model": params, **init_extra(mask)}``.

  Args:
    model: the learner.
    name: algorithm name.
    loss: task loss name or :class:`Loss`.
    steps: inner steps during meta-training.
    eval_steps: inner steps at test time (defaults to ``steps``).
    first_order: stop gradients through inner gradients.
    remat: rematerialise inner steps.
    batch_norm: BatchNorm policy, see :mod:`metajax.core.learner`.
    adapt_filter: which parameters the inner loop adapts, by key path.
    init_extra: extra meta-parameters (learned learning rates) from the adapted part.
    inner_optimizer: ``inner_optimizer(meta_params, steps)`` -> optax transform.
    step_weights: ``step_weights(step, steps) -> [steps]`` weights of the query
      loss after each inner step (MAML++ multi-step loss); None uses the last.
    masks: the caller handles nothing data-dependent outside this builder, so masked (padded)
      tasks are supported (:mod:`metajax.core.masks`): every mean over examples is weighted by
      the mask. Needs a loss with ``masked_fn`` and a model that hides padding from BatchNorm.
  """
  model = check_model(model)
  steps = check_steps(steps)
  eval_steps = steps if eval_steps is None else check_steps(eval_steps, "eval_steps")
  train = check_batch_norm(batch_norm)
  loss = resolve_loss(loss)
  mask = adapt_mask(model.params, adapt_filter)
  state = model.state

  def outputs(params, x, example_mask=None):
    return apply_model(model, params, x, train=train, mask=example_mask, state=state)

  def run_inner(meta_params, support_x, support_y, n_steps, observe=None, support_mask=None):
    adapted, frozen = split(meta_params["model"], mask)

    def support_loss(part):
      out = outputs(merge(part, frozen, mask), support_x, support_mask)
      return loss.value(out, support_y, support_mask)

    wrapped_observe = None if observe is None else (lambda part: observe(merge(part, frozen, mask)))
    result = inner_loop(support_loss, adapted, inner_optimizer(meta_params, n_steps),
                        steps=n_steps, first_order=first_order, remat=remat,
                        observe=wrapped_observe)
    return merge(result.params, frozen, mask), result

  def init():
    # Fresh buffers: a donating meta-step must not delete the model's own arrays.
    params = jax.tree.map(jnp.array, model.params)
    return {"model": params, **init_extra(split(params, mask)[0])}

  def task_loss(meta_params, task, key, step):
    del key
    query_mask = task.query_mask
    query_loss = lambda p: loss.value(outputs(p, task.query_x, query_mask), task.query_y,
                                      query_mask)
    if step_weights is None:
      adapted, result = run_inner(meta_params, task.support_x, task.support_y, steps,
                                  support_mask=task.support_mask)
      logits = outputs(adapted, task.query_x, query_mask)
      objective = loss.value(logits, task.query_y, query_mask)
    else:
      adapted, result = run_inner(meta_params, task.support_x, task.support_y, steps,
                                  observe=query_loss, support_mask=task.support_mask)
      logits = outputs(adapted, task.query_x, query_mask)
      objective = jnp.sum(step_weights(step, steps) * result.observed)
    metrics = {"query_loss": loss.value(logits, task.query_y, query_mask),
               **loss.metric_values(logits, task.query_y, query_mask)}
    if steps:
      metrics["support_loss_before"] = result.losses[0]
    return objective, metrics

  def adapt(meta_params, support_x, support_y, key=None, *, steps=None, mask=None):
    del key
    n_steps = eval_steps if steps is None else check_steps(steps)
    return run_inner(meta_params, support_x, support_y, n_steps, support_mask=mask)[0]

  def predict(meta_params, adapted, x, mask=None):
    del meta_params
    return outputs(adapted, x, mask)

  def evaluate(meta_params, task, key=None, *, steps=None):
    adapted = adapt(meta_params, task.support_x, task.support_y, key, steps=steps,
                    mask=task.support_mask)
    logits = outputs(adapted, task.query_x, task.query_mask)
    return {"loss": loss.value(logits, task.query_y, task.query_mask),
            **loss.metric_values(logits, task.query_y, task.query_mask)}

  checker = make_output_checker(model, loss, train, masks=masks, name=name)
  return MetaLearner(init, task_loss, grad_of_task_loss(task_loss), adapt, predict, evaluate,
                     checker, name, not mask_refusal(model, loss, train, masks))
