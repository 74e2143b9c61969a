"""MAML++'s per-step BatchNorm: weights and biases (BNWB) and running statistics (BNRS).

Antoniou, Edwards & Storkey (2019), Section 4, give each inner step its own BatchNorm scale and
shift (meta-learned, not adapted by the inner loop) and its own running statistics (accumulated
in meta-training, which Section 4 uses at test time instead of the batch's own statistics; the
authors' released code normalises by the batch's statistics at test too, and so does this module
unless ``running_stats_at_test``).

Copies. With ``steps`` inner steps the network runs with ``steps + 1`` sets of weights:
``theta_0`` (the initialisation) to ``theta_steps`` (adapted). Copy ``k`` belongs to every
forward pass with ``theta_k``: the support pass of inner step ``k`` (``k < steps``), the query
pass of the multi-step loss after ``k`` updates, and, for ``k = steps``, the query pass that
scores the adapted network. The paper keeps ``steps`` copies, so the final query pass shares copy
``steps - 1`` with the support pass of the last step, which ran on the weights before that step's
update; the extra copy gives that pass statistics of the weights it actually runs with.

Running statistics are learner state, not parameters. They live in the meta-parameters under
``"bn_running_stats"``, which the learner lists in :attr:`metajax.MetaLearner.state_keys`: its
``task_grad`` returns, for that key, the task's statistics after one update of the model's own
BatchNorm rule (``momentum * old + (1 - momentum) * batch``, from the support batch of step ``k``
for ``k < steps`` and the query batch for ``k = steps``), and the meta-step stores their mean over
the task batch (an exponential moving average of the task-averaged batch statistics) and keeps
them away from the outer optimizer. The update is linear in the batch statistics, so ``vmap``,
``map``, chunked and multi-device batching all give the same average, and the statistics are
saved and restored with the rest of the meta-parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms._gradient_based import (
  check_batch_norm,
  check_model,
  make_output_checker,
  mask_refusal,
)
from metajax.core._checks import check_steps
from metajax.core.learner import Model
from metajax.core.losses import Loss, resolve_loss
from metajax.core.masks import accepts_mask
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import PyTree

WEIGHTS = "bn_weights"
STATS = "bn_running_stats"
_BN_PARAM_NAMES = ("scale", "bias")


def _key(entry: Any) -> Any:
  return getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry)))


def batch_norm_param_mask(model: Model) -> PyTree:
  """Boolean pytree over ``model.params``: True at BatchNorm scales and shifts.

  A parameter counts as BatchNorm's when it is named ``scale`` or ``bias`` and sits in a module
  that also holds state (running statistics): the same path in ``model.state`` (Flax NNX) or
  that path under a state collection such as ``batch_stats`` (Flax Linen).
  """
  stateful = set()
  for path, _ in jax.tree_util.tree_flatten_with_path(model.state)[0]:
    keys = tuple(_key(k) for k in path)
    stateful.update({keys[:-1], keys[1:-1]})

  def is_bn(path, _):
    keys = tuple(_key(k) for k in path)
    return bool(keys) and keys[-1] in _BN_PARAM_NAMES and keys[:-1] in stateful

  return jax.tree_util.tree_map_with_path(is_bn, model.params)


def _partition(tree: Mapping, mask: Mapping) -> tuple[dict, dict]:
  """Splits nested dicts into (leaves where mask is False, leaves where it is True)."""
  rest, chosen = {}, {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      a, b = _partition(v, mask[k])
      if a:
        rest[k] = a
      if b:
        chosen[k] = b
    elif mask[k]:
      chosen[k] = v
    else:
      rest[k] = v
  return rest, chosen


def _combine(a: Mapping, b: Mapping) -> dict:
  """The inverse of :func:`_partition`: merges two nested dicts with disjoint leaves."""
  out = dict(a)
  for k, v in b.items():
    out[k] = _combine(out[k], v) if k in out and isinstance(v, Mapping) else v
  return out


def _stack(tree: PyTree, copies: int) -> PyTree:
  return jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x)[None], copies, axis=0), tree)


def check_options(model: Model, *, per_step_bn_weights: bool, per_step_bn_stats: bool,
                  batch_norm: str) -> PyTree | None:
  """Raises for option combinations that cannot work; returns the BatchNorm parameter mask."""
  if per_step_bn_stats:
    if batch_norm != "transductive":
      raise ValueError(
          f"per_step_bn_stats=True accumulates running statistics from the batch statistics of "
          f"meta-training, which batch_norm={batch_norm!r} never computes (it uses the stored "
          "statistics); use batch_norm='transductive' or drop per_step_bn_stats.")
    leaves = jax.tree.leaves(model.state)
    if not leaves:
      raise ValueError(
          "per_step_bn_stats=True needs a model with BatchNorm running statistics, but "
          "model.state is empty (no BatchNorm); drop per_step_bn_stats or use a model with "
          "BatchNorm, e.g. metajax.models.conv4_model.")
    bad = [jnp.result_type(x) for x in leaves if not jnp.issubdtype(jnp.result_type(x),
                                                                    jnp.floating)]
    if bad:
      raise ValueError(
          f"per_step_bn_stats=True keeps one copy of model.state per inner step, so every state "
          f"leaf must be floating-point running statistics; this model's state also holds "
          f"{sorted(set(map(str, bad)))} leaves (e.g. Dropout random-number counts); drop "
          "per_step_bn_stats or remove those layers.")
  if not per_step_bn_weights:
    return None
  if not isinstance(model.params, Mapping):
    raise ValueError(
        f"per_step_bn_weights=True needs model.params as nested dicts (as metajax.from_nnx and "
        f"metajax.from_linen give), got {type(model.params).__name__}; drop per_step_bn_weights.")
  mask = batch_norm_param_mask(model)
  if not any(jax.tree.leaves(mask)):
    raise ValueError(
        "per_step_bn_weights=True found no BatchNorm scale or bias in the model (a 'scale' or "
        "'bias' parameter in a layer that also holds running statistics in model.state); drop "
        "per_step_bn_weights or use a model with BatchNorm, e.g. metajax.models.conv4_model.")
  if all(jax.tree.leaves(mask)):
    raise ValueError("per_step_bn_weights=True: every parameter is a BatchNorm scale or bias, "
                     "so the inner loop would have nothing to adapt; drop per_step_bn_weights.")
  return mask


def build(
    model: Model,
    *,
    name: str,
    loss: str | Loss,
    steps: int,
    first_order: bool,
    remat: bool,
    batch_norm: str,
    per_step_bn_weights: bool,
    per_step_bn_stats: bool,
    running_stats_at_test: bool,
    init_extra: Callable[[PyTree], PyTree],
    inner_optimizer: Callable[[PyTree, int], optax.GradientTransformation],
    step_weights: Callable[[Any, int], jax.Array] | None,
) -> MetaLearner:
  """A MAML++ :class:`MetaLearner` with per-step BatchNorm weights and/or running statistics.

  Meta-parameters: ``"model"`` (the parameters the inner loop adapts: all but the BatchNorm
  scales and shifts with ``per_step_bn_weights``), ``"bn_weights"`` (those scales and shifts,
  nested like the model's, each with a leading ``[steps + 1]`` axis), ``init_extra``'s entries
  (``"inner_lr"``), and ``"bn_running_stats"`` (``model.state`` with a leading ``[steps + 1]``
  axis; a state key, see the module docstring).
  """
  model = check_model(model)
  steps = check_steps(steps, minimum=1)
  train = check_batch_norm(batch_norm)
  loss = resolve_loss(loss)
  bn_mask = check_options(model, per_step_bn_weights=per_step_bn_weights,
                          per_step_bn_stats=per_step_bn_stats, batch_norm=batch_norm)
  copies = steps + 1
  # Test passes normalise by the running statistics (train=False) only when asked to; otherwise
  # by the batch's own, as in meta-training (and in the authors' released code).
  eval_train = False if (per_step_bn_stats and running_stats_at_test) else train
  stateful = bool(jax.tree.leaves(model.state)) and accepts_mask(model)

  def run_model(params, state, x, train_now, mask):
    if mask is not None and train_now and stateful:
      return model.apply(params, state, x, train=train_now, mask=mask)
    return model.apply(params, state, x, train=train_now)

  def full_params(meta_params, rest, k):
    if not per_step_bn_weights:
      return rest
    return _combine(rest, jax.tree.map(lambda w: w[k], meta_params[WEIGHTS]))

  def stats_at(meta_params, k):
    if not per_step_bn_stats:
      return model.state
    return jax.lax.stop_gradient(jax.tree.map(lambda s: s[k], meta_params[STATS]))

  def forward(meta_params, rest, k, x, mask, train_now):
    return run_model(full_params(meta_params, rest, k), stats_at(meta_params, k), x, train_now,
                     mask)

  def run_inner(meta_params, support_x, support_y, support_mask, n_steps, train_now,
                observe=None):
    optimizer = inner_optimizer(meta_params, n_steps)

    def support_loss(rest, k):
      out, new_state = forward(meta_params, rest, k, support_x, support_mask, train_now)
      return loss.value(out, support_y, support_mask), new_state

    value_and_grad = jax.value_and_grad(support_loss, has_aux=True)

    def step(carry, k):
      rest, opt_state = carry
      (value, new_state), grads = value_and_grad(rest, k)
      if first_order:
        grads = jax.lax.stop_gradient(grads)
      updates, opt_state = optimizer.update(grads, opt_state, rest)
      rest = optax.apply_updates(rest, updates)
      seen = None if observe is None else observe(rest, k + 1)
      return (rest, opt_state), (value, new_state, seen)

    if remat:
      step = jax.checkpoint(step)
    rest = meta_params["model"]
    (rest, _), (losses, new_states, observed) = jax.lax.scan(
        step, (rest, optimizer.init(rest)), jnp.arange(n_steps))
    return rest, losses, new_states, observed

  def init():
    # Fresh buffers: a donating meta-step must not delete the model's own arrays.
    params = jax.tree.map(jnp.array, model.params)
    if per_step_bn_weights:
      rest, bn = _partition(params, bn_mask)
      meta_params = {"model": rest, WEIGHTS: _stack(bn, copies)}
    else:
      rest = params
      meta_params = {"model": rest}
    meta_params.update(init_extra(rest))
    if per_step_bn_stats:
      meta_params[STATS] = _stack(model.state, copies)
    return meta_params

  def loss_and_stats(meta_params, task, step):
    query_mask = task.query_mask
    query_pass = lambda rest, k: forward(meta_params, rest, k, task.query_x, query_mask, train)
    observe = None
    if step_weights is not None:
      observe = lambda rest, k: loss.value(query_pass(rest, k)[0], task.query_y, query_mask)
    rest, losses, support_states, observed = run_inner(
        meta_params, task.support_x, task.support_y, task.support_mask, steps, train, observe)
    logits, query_state = query_pass(rest, steps)
    query_loss = loss.value(logits, task.query_y, query_mask)
    objective = (query_loss if step_weights is None
                 else jnp.sum(step_weights(step, steps) * observed))
    metrics = {"query_loss": query_loss, **loss.metric_values(logits, task.query_y, query_mask),
               "support_loss_before": losses[0]}
    new_stats = None
    if per_step_bn_stats:
      # Copies 0..steps-1 from the support passes, copy `steps` from the final query pass.
      new_stats = jax.lax.stop_gradient(jax.tree.map(
          lambda s, q: jnp.concatenate([s, q[None]]), support_states, query_state))
    return objective, (metrics, new_stats)

  def task_loss(meta_params, task, key, step):
    del key
    objective, (metrics, _) = loss_and_stats(meta_params, task, step)
    return objective, metrics

  value_and_grad = jax.value_and_grad(loss_and_stats, has_aux=True)

  def task_grad(meta_params, task, key, step):
    del key
    (objective, (metrics, new_stats)), grads = value_and_grad(meta_params, task, step)
    if per_step_bn_stats:
      grads = {**grads, STATS: new_stats}  # the task's new running statistics, not a gradient
    return grads, {**metrics, "loss": objective}

  def test_steps(n_steps):
    if n_steps is None:
      return steps
    n_steps = check_steps(n_steps)
    if n_steps > steps:
      raise ValueError(
          f"{name} with per-step BatchNorm has BatchNorm copies for steps={steps} inner steps "
          f"only, so test-time steps can be at most {steps}, got steps={n_steps}; lower the "
          "steps override or build the learner without per_step_bn_weights/per_step_bn_stats.")
    # Fewer steps (an adaptation curve): the query pass after k updates uses copy k, as the
    # multi-step loss's query pass after k updates does in meta-training.
    return n_steps

  def adapt(meta_params, support_x, support_y, key=None, *, steps=None, mask=None):
    del key
    n_steps = test_steps(steps)
    rest = run_inner(meta_params, support_x, support_y, mask, n_steps, eval_train)[0]
    return full_params(meta_params, rest, n_steps)

  def predict(meta_params, adapted, x, mask=None):
    # ``adapted`` from the full ``steps``; predict_query handles a steps override.
    return predict_after(meta_params, adapted, x, mask, steps)

  def predict_query(meta_params, support_x, support_y, query_x, key=None, *, steps=None):
    adapted = adapt(meta_params, support_x, support_y, key, steps=steps)
    return predict_after(meta_params, adapted, query_x, None, test_steps(steps))

  def predict_after(meta_params, adapted, x, mask, n_steps):
    return run_model(adapted, stats_at(meta_params, n_steps), x, eval_train, mask)[0]

  def evaluate(meta_params, task, key=None, *, steps=None):
    adapted = adapt(meta_params, task.support_x, task.support_y, key, steps=steps,
                    mask=task.support_mask)
    logits = predict_after(meta_params, adapted, task.query_x, task.query_mask,
                           test_steps(steps))
    return {"loss": loss.value(logits, task.query_y, task.query_mask),
            **loss.metric_values(logits, task.query_y, task.query_mask)}

  checker = make_output_checker(model, loss, train, masks=True, name=name)
  return MetaLearner(init, task_loss, task_grad, adapt, predict, evaluate, checker, name,
                     not mask_refusal(model, loss, train, True), predict_query,
                     state_keys=(STATS,) if per_step_bn_stats else ())
