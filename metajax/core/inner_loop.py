"""The differentiable inner loop: K steps of an optax transformation under ``lax.scan``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.core._checks import check_steps
from metajax.core.types import Array, PyTree


class InnerLoopResult(NamedTuple):
  """What :func:`inner_loop` returns.

  Attributes:
    params: the adapted parameters after ``steps`` updates.
    losses: ``[steps]`` inner loss at the parameters *before* each update.
    observed: ``observe(params_after_step_i)`` stacked over the steps, or None.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> result = inner_loop(lambda p: jnp.sum(p ** 2), jnp.ones(2), optax.sgd(0.25), steps=2)
    >>> result.losses                      # before step 1 and before step 2
    Array([2. , 0.5], dtype=float32)
    >>> result.observed is None
    True
  """

  params: PyTree
  losses: Array
  observed: Any


def inner_loop(
    loss_fn: Callable[[PyTree], Array],
    params: PyTree,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    first_order: bool = False,
    remat: bool = False,
    observe: Callable[[PyTree], Any] | None = None,
    unroll: int | bool = 1,
) -> InnerLoopResult:
  """Adapts ``params`` by ``steps`` optimizer steps on ``loss_fn``, differentiably.

  The loop is a ``lax.scan``, so compile time does not grow with ``steps``.
  Differentiating the result with respect to ``params`` gives the full
  second-order MAML meta-gradient; ``first_order=True`` stops gradients through
  the inner gradients (FOMAML), so ``d params' / d params = I``.

  Optimizers with a square root (Adam, RMSProp) need ``eps_root > 0`` (e.g.
  ``optax.adam(1e-3, eps_root=1e-8)``): the derivative of ``sqrt`` at 0 is
  infinite and would make meta-gradients NaN.

  Args:
    loss_fn: ``loss_fn(params) -> scalar`` inner (support) loss.
    params: initial parameters (the meta-learned initialisation).
    optimizer: an optax transformation producing *updates* to add to params.
    steps: number of inner updates, a static int >= 0.
    first_order: drop second-order terms by stopping inner gradients.
    remat: rematerialise each step in the backward pass (``jax.checkpoint``):
      memory stays flat in ``steps`` at the cost of recomputing forward passes.
    observe: optional ``observe(params) -> pytree`` evaluated after every step
      (e.g. the query loss for MAML++'s multi-step loss).
    unroll: ``lax.scan``'s unroll factor; ``True`` unrolls fully (faster for
      tiny models on CPU, compile time then grows with ``steps``).

  Returns:
    An :class:`InnerLoopResult`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> result = inner_loop(lambda p: jnp.sum(p ** 2), jnp.ones(3), optax.sgd(0.25), steps=2)
    >>> result.params
    Array([0.25, 0.25, 0.25], dtype=float32)

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017.
  """
  steps = check_steps(steps)
  value_and_grad = jax.value_and_grad(loss_fn)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = value_and_grad(params)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    out = (loss, observe(params) if observe is not None else None)
    return (params, opt_state), out

  if remat:
    step = jax.checkpoint(step)
  (params, _), (losses, observed) = jax.lax.scan(
      step, (params, optimizer.init(params)), xs=None, length=steps, unroll=unroll
  )
  return InnerLoopResult(params, losses, observed)


class LearnedLRState(NamedTuple):
  count: Array


def learned_sgd(learning_rates: PyTree, *, per_step: bool = False) -> optax.GradientTransformation:
  """SGD with learned (meta-parameter) learning rates: ``update = -lr * grad``.

  Args:
    learning_rates: pytree shaped like the parameters. Each leaf broadcasts
      against its parameter (a scalar per tensor, or one rate per entry as in
      Meta-SGD). With ``per_step=True`` each leaf has a leading axis of length
      ``steps`` and step ``i`` uses ``leaf[i]`` (MAML++ LSLR).
    per_step: index the rates by inner step.

  Returns:
    An optax transformation; its rates stay differentiable.

  References:
    Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.
    Antoniou, Edwards & Storkey, "How to train your MAML", ICLR 2019.
  """

  def init(params):
    del params
    return LearnedLRState(jnp.zeros([], jnp.int32))

  def update(grads, state, params=None):
    del params
    rates = jax.tree.map(lambda lr: lr[state.count], learning_rates) if per_step else learning_rates
    updates = jax.tree.map(lambda lr, g: -lr * g, rates, grads)
    return updates, LearnedLRState(state.count + 1)

  return optax.GradientTransformation(init, update)
