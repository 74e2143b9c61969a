"""Checks of an inner-loop optimizer that would make second-order meta-gradients NaN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.core.types import PyTree


def check_second_order_safe(optimizer: optax.GradientTransformation, params: PyTree, *,
                            name: str) -> None:
  """Raises when the derivative of ``optimizer``'s first update at a zero gradient is not finite.

  Second-order MAML differentiates every inner update with respect to the inner gradient. An
  update with a square root of the squared gradients (Adam, AdamW, RMSProp, Adadelta, ... without
  ``eps_root``) has an infinite derivative where that gradient is 0, and ``inf * 0`` makes the
  whole meta-gradient NaN as soon as a single parameter's support gradient is exactly 0 (a dead
  ReLU, a class absent from the support set, a frozen bias). Rather than inspect optax's
  internals, this probes the transformation itself: the derivative of the sum of its first
  update along ``grads = t * ones`` at ``t = 0``, by reverse mode as the meta-gradient takes it.
  A transformation whose update cannot run on plain gradients (it needs extra arguments) is not
  probed. The probe uses one entry per parameter leaf (optax's rules are elementwise).

  Args:
    optimizer: the inner optax transformation.
    params: the parameters it adapts (their structure and shapes).
    name: the algorithm, for the message.

  Raises:
    ValueError: naming the fix (``eps_root > 0`` or ``first_order=True``).
  """
  # One entry per leaf, of the leaf's rank and dtype: the update rules of optax are elementwise,
  # and tiny shapes keep the probe at a few cached eager kernels (full shapes took seconds).
  params = jax.tree.map(lambda p: jnp.zeros((1,) * jnp.ndim(p), jnp.result_type(p)), params)

  def first_update_sum(t):
    grads = jax.tree.map(lambda p: t * jnp.ones_like(p), params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return sum(jnp.sum(u) for u in jax.tree.leaves(updates))

  try:
    with jax.ensure_compile_time_eval():  # concrete even when called under a trace
      slope = jax.grad(first_update_sum)(jnp.zeros([], jnp.float32))
  except (TypeError, ValueError):  # needs extra arguments or another calling convention
    return
  if not np.isfinite(np.asarray(slope)):
    raise ValueError(
        f"{name}'s inner_optimizer has a non-finite derivative at a zero gradient (d update / "
        f"d grad = {float(slope)}): it takes the square root of squared gradients without "
        "eps_root, as optax.adam(lr), adamw, nadam and amsgrad do by default. Second-order "
        "meta-gradients are then NaN whenever one parameter's support gradient is exactly 0. "
        "Pass eps_root > 0, e.g. optax.adam(lr, eps_root=1e-8), or use first_order=True."
    )
