"""Multi-task learning: one shared trunk, one head per task, trained jointly.

The neighbour of meta-learning that introductory texts teach beside it (Caruana 1997): tasks
known in advance share a trunk and each has its own head and loss; all are trained at once on
the weighted sum of their losses. Unlike a :class:`metajax.MetaLearner` there is no adaptation
to a new task, so :func:`multitask` returns its own small value, :class:`MultiTaskLearner`, and
:func:`multitask_step` compiles one joint update (one ``jit``, donated state) for it.

A batch is a dict ``{task name: (x, y)}``: tasks may have different inputs, label sets and
losses (classification or regression). The trunk runs once per task, so BatchNorm (in
``"transductive"`` mode) normalises each task's inputs by their own statistics, and the total
loss is exactly the weighted sum of the single-task losses (so are its gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms._gradient_based import check_batch_norm, check_model
from metajax.core.learner import Model
from metajax.core.losses import Loss, resolve_loss
from metajax.core.meta_step import MetaTrainState
from metajax.core.types import Array, PyTree

Batch = Mapping[str, tuple[Array, Array]]
WEIGHTINGS = ("sum", "uncertainty")


class MultiTaskHead(NamedTuple):
  """One task's head and loss.

  Attributes:
    model: a :class:`metajax.Model` from trunk features to the task's outputs (e.g. a linear
      layer with as many outputs as the task's classes).
    loss: ``"cross_entropy"`` (integer labels), ``"mse"`` (real targets) or a
      :class:`metajax.Loss`.

  Example:
    A regression head on 8 trunk features:

    >>> import jax.numpy as jnp, metajax
    >>> head = metajax.from_function(lambda p, h: h @ p["w"], {"w": jnp.zeros((8, 1))})
    >>> MultiTaskHead(head, "mse").loss
    'mse'

  References:
    Caruana, "Multitask Learning", Machine Learning 28, 1997.
  """

  model: Model
  loss: str | Loss = "cross_entropy"


class MultiTaskLearner(NamedTuple):
  """A shared-trunk multi-task model as pure functions.

  Attributes:
    init: ``init() -> params``: ``{"trunk", "heads": {name: params}}`` plus ``"log_variance":
      {name: scalar}`` with uncertainty weighting.
    loss: ``loss(params, batch) -> (total, metrics)``; metrics hold ``"loss"`` (the weighted
      total) and per task ``"<name>/loss"`` and its loss's metrics (``"<name>/accuracy"``), and
      ``"<name>/weight"`` (the effective weight ``w / sigma^2`` with uncertainty weighting).
    grad: ``grad(params, batch) -> (grads, metrics)``.
    predict: ``predict(params, x, name) -> outputs`` of task ``name``'s head.
    evaluate: ``evaluate(params, batch) -> metrics`` (no gradient).
    check_batch: raises on a batch whose task names or shapes do not fit.
    names: the task names, in order.

  Example:
    >>> import jax.numpy as jnp, metajax
    >>> trunk = metajax.from_function(lambda p, x: x @ p["w"], {"w": jnp.ones((3, 4))})
    >>> head = metajax.from_function(lambda p, h: h @ p["w"], {"w": jnp.zeros((4, 2))})
    >>> learner = multitask(trunk, heads={"a": head})
    >>> learner.names, learner.predict(learner.init(), jnp.ones((5, 3)), "a").shape
    (('a',), (5, 2))

  References:
    Caruana, "Multitask Learning", Machine Learning 28, 1997.
  """

  init: Callable[[], PyTree]
  loss: Callable[[PyTree, Batch], tuple[Array, dict[str, Array]]]
  grad: Callable[[PyTree, Batch], tuple[PyTree, dict[str, Array]]]
  predict: Callable[[PyTree, Array, str], Array]
  evaluate: Callable[[PyTree, Batch], dict[str, Array]]
  check_batch: Callable[[Batch], None]
  names: tuple[str, ...]


def multitask(
    trunk: Model,
    *,
    heads: Mapping[str, MultiTaskHead | Model | tuple[Model, str | Loss]],
    loss_weights: Mapping[str, float] | None = None,
    weighting: str = "sum",
    batch_norm: str = "transductive",
) -> MultiTaskLearner:
  """A shared ``trunk`` with one head per task, trained on the weighted sum of the task losses.

  With ``weighting="sum"`` the total is ``sum_t w_t L_t``. With ``weighting="uncertainty"``
  (Kendall, Gal & Cipolla 2018) each task has a learned ``s_t = log sigma_t^2`` and contributes
  ``w_t (exp(-s_t) L_t + s_t / 2)`` for classification and ``w_t (exp(-s_t) L_t / 2 + s_t / 2)``
  for regression (their Eq. 7 and 10 with ``s = log sigma^2``, the parameterisation they
  train for numerical stability), so noisier tasks are down-weighted automatically.

  Args:
    trunk: the shared network, ``apply(params, state, x) -> features``.
    heads: task name -> :class:`MultiTaskHead` (a bare :class:`metajax.Model` means
      cross-entropy; a ``(model, loss)`` pair also works).
    loss_weights: task name -> ``w_t`` (default 1 for every task).
    weighting: ``"sum"`` or ``"uncertainty"``.
    batch_norm: ``"transductive"`` (batch statistics of each task's inputs) or ``"frozen"``.

  Returns:
    A :class:`MultiTaskLearner`; train it with :func:`multitask_step`.

  Example:
    >>> import jax, jax.numpy as jnp, metajax
    >>> trunk = metajax.models.mlp_model([8], 8, jax.random.key(0), input_dim=3)
    >>> learner = multitask(trunk, heads={
    ...     "class": metajax.models.mlp_model([], 4, jax.random.key(1), input_dim=8),
    ...     "value": (metajax.models.mlp_model([], 1, jax.random.key(2), input_dim=8), "mse")})
    >>> batch = {"class": (jnp.ones((5, 3)), jnp.zeros(5, jnp.int32)),
    ...          "value": (jnp.ones((5, 3)), jnp.zeros((5, 1)))}
    >>> sorted(learner.loss(learner.init(), batch)[1])
    ['class/accuracy', 'class/loss', 'class/weight', 'loss', 'value/loss', 'value/weight']

  References:
    Caruana, "Multitask Learning", Machine Learning 28, 1997; Kendall, Gal & Cipolla, "Multi-Task
    Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018.
    https://arxiv.org/abs/1705.07115
  """
  trunk = check_model(trunk)
  train = check_batch_norm(batch_norm)
  if weighting not in WEIGHTINGS:
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}.")
  if not isinstance(heads, Mapping) or not heads:
    raise ValueError(f"heads must be a non-empty dict of task name -> head, got {heads!r}.")
  specs: dict[str, tuple[Model, Loss]] = {}
  for name, head in heads.items():
    if not isinstance(name, str) or not name or "/" in name:
      raise ValueError(f"task names must be non-empty strings without '/', got {name!r}.")
    if isinstance(head, Model):
      head = MultiTaskHead(head)
    elif isinstance(head, tuple) and not isinstance(head, MultiTaskHead):
      head = MultiTaskHead(*head)
    if not isinstance(head, MultiTaskHead):
      raise TypeError(f"heads[{name!r}] must be a MultiTaskHead, a metajax.Model or a (model, "
                      f"loss) pair, got {type(head).__name__}.")
    specs[name] = (check_model(head.model), resolve_loss(head.loss))
  names = tuple(specs)
  weights = {name: 1.0 for name in names}
  for name, value in (loss_weights or {}).items():
    if name not in specs:
      raise ValueError(f"loss_weights names task {name!r}, which has no head; tasks: "
                       f"{list(names)}.")
    if not (isinstance(value, int | float) and value >= 0):
      raise ValueError(f"loss_weights[{name!r}] must be a number >= 0, got {value!r}.")
    weights[name] = float(value)
  uncertainty = weighting == "uncertainty"

  def init():
    fresh = lambda tree: jax.tree.map(jnp.array, tree)
    params = {"trunk": fresh(trunk.params),
              "heads": {name: fresh(model.params) for name, (model, _) in specs.items()}}
    if uncertainty:
      params["log_variance"] = {name: jnp.zeros([], jnp.float32) for name in names}
    return params

  def predict(params, x, name):
    if name not in specs:
      raise ValueError(f"no task {name!r}; tasks: {list(names)}.")
    features = trunk.apply(params["trunk"], trunk.state, x, train=train)[0]
    model = specs[name][0]
    return model.apply(params["heads"][name], model.state, features, train=train)[0]

  def loss(params, batch):
    total, metrics = 0.0, {}
    for name in names:
      x, y = batch[name]
      outputs = predict(params, x, name)
      task_loss = specs[name][1]
      value = task_loss.fn(outputs, y)
      metrics[f"{name}/loss"] = value
      metrics.update({f"{name}/{k}": v for k, v in task_loss.metrics(outputs, y).items()})
      if uncertainty:
        s = params["log_variance"][name]
        factor = 1.0 if task_loss.classification else 0.5
        term = factor * jnp.exp(-s) * value + 0.5 * s
        metrics[f"{name}/weight"] = weights[name] * factor * jnp.exp(-s)
      else:
        term = value
        metrics[f"{name}/weight"] = jnp.asarray(weights[name], jnp.float32)
      total = total + weights[name] * term
    return total, {**metrics, "loss": total}

  value_and_grad = jax.value_and_grad(loss, has_aux=True)

  def grad(params, batch):
    (_, metrics), grads = value_and_grad(params, batch)
    return grads, metrics

  def evaluate(params, batch):
    return loss(params, batch)[1]

  def check_batch(batch):
    if not isinstance(batch, Mapping) or set(batch) != set(names):
      got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
      raise ValueError(f"a multi-task batch is a dict {{task name: (x, y)}} with exactly the "
                       f"tasks {sorted(names)}, got {got}.")
    for name in names:
      pair = batch[name]
      if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"batch[{name!r}] must be an (x, y) pair.")
      x, y = pair
      if jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(f"batch[{name!r}] has {jnp.shape(x)[0]} inputs but {jnp.shape(y)[0]} "
                         "targets; give one target per input.")
      if specs[name][1].classification and not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise TypeError(f"task {name!r} is a classification task: its targets must be integer "
                        f"labels, got dtype {jnp.result_type(y)}; cast with y.astype(np.int32).")

  return MultiTaskLearner(init, loss, grad, predict, evaluate, check_batch, names)


def init_multitask_state(learner: MultiTaskLearner, optimizer: optax.GradientTransformation
                         ) -> MetaTrainState:
  """The initial training state (step, params, optimizer state).

  Args:
    learner: a :class:`MultiTaskLearner` from :func:`multitask`.
    optimizer: the optax transformation :func:`multitask_step` will use.

  Returns:
    A :class:`metajax.MetaTrainState` at step 0 holding ``learner.init()`` and the optimizer's
    initial state.

  Example:
    >>> import jax.numpy as jnp, optax, metajax
    >>> trunk = metajax.from_function(lambda p, x: x @ p["w"], {"w": jnp.zeros((3, 4))})
    >>> head = metajax.from_function(lambda p, h: h @ p["w"], {"w": jnp.zeros((4, 2))})
    >>> state = init_multitask_state(multitask(trunk, heads={"a": head}), optax.sgd(0.1))
    >>> int(state.step), sorted(state.params)
    (0, ['heads', 'trunk'])
  """
  params = learner.init()
  return MetaTrainState(jnp.zeros([], jnp.int32), params, optimizer.init(params))


def multitask_step(learner: MultiTaskLearner, optimizer: optax.GradientTransformation, *,
                   donate: bool = True) -> Callable[[MetaTrainState, Batch], Any]:
  """One compiled joint update: ``step(state, batch) -> (state, metrics)``.

  Every task's loss and gradient, their weighted sum and the optimizer update are one ``jit``
  call; the input state is donated. ``metrics`` also holds ``"grad_norm"``.

  Args:
    learner: a :class:`MultiTaskLearner` from :func:`multitask`.
    optimizer: the optax transformation applied to the summed gradient.
    donate: donate the input state's buffers to the update (do not reuse a state after passing
      it to ``step``); ``False`` keeps them.

  Returns:
    ``step(state, batch) -> (state, metrics)``. ``batch`` is ``{task name: (x, y)}`` and is
    checked (``ValueError``/``TypeError`` naming the task) the first time each shape is seen.

  Example:
    >>> import jax, jax.numpy as jnp, optax, metajax
    >>> trunk = metajax.models.mlp_model([8], 8, jax.random.key(0), input_dim=3)
    >>> head = metajax.models.mlp_model([], 2, jax.random.key(1), input_dim=8)
    >>> learner = multitask(trunk, heads={"a": head, "b": head})
    >>> step = multitask_step(learner, optax.adam(1e-2))
    >>> state = init_multitask_state(learner, optax.adam(1e-2))
    >>> batch = {t: (jnp.ones((4, 3)), jnp.zeros(4, jnp.int32)) for t in ("a", "b")}
    >>> state, metrics = step(state, batch)
    >>> int(state.step)
    1
  """

  def update(state: MetaTrainState, batch: Batch):
    grads, metrics = learner.grad(state.params, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (MetaTrainState(state.step + 1, params, opt_state),
            {**metrics, "grad_norm": optax.tree.norm(grads)})

  compiled = jax.jit(update, donate_argnums=(0,) if donate else ())
  checked: set = set()

  def step(state: MetaTrainState, batch: Batch):
    signature = tuple(sorted((k, tuple(jnp.shape(a) for a in v)) for k, v in batch.items())) \
        if isinstance(batch, Mapping) else None
    if signature is None or signature not in checked:
      learner.check_batch(batch)
      checked.add(signature)
    return compiled(state, {k: tuple(v) for k, v in batch.items()})

  return step
