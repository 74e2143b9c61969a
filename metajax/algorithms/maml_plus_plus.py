"""MAML++: per-layer per-step learned inner rates (LSLR) and the multi-step loss (MSL)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms import _gradient_based
from metajax.core._checks import check_positive, check_steps
from metajax.core.inner_loop import learned_sgd
from metajax.core.learner import Model
from metajax.core.losses import Loss
from metajax.core.meta_learner import MetaLearner


def multi_step_loss_weights(step: jax.Array, steps: int, anneal_steps: int) -> jax.Array:
  """Importance of the query loss after each inner step, annealed towards the last.

  Starts uniform (``1/steps`` each); over ``anneal_steps`` outer steps the
  non-final weights decay linearly to ``0.03/steps`` and the final weight takes
  the rest, as in Antoniou et al. (2019), Section 4 and their released settings.

  Args:
    step: outer iteration.
    steps: inner steps.
    anneal_steps: outer steps over which the weights anneal.

  Returns:
    ``[steps]`` weights summing to one.

  Example:
    >>> [round(float(w), 4) for w in multi_step_loss_weights(0, 3, 100)]
    [0.3333, 0.3333, 0.3333]
    >>> [round(float(w), 4) for w in multi_step_loss_weights(100, 3, 100)]
    [0.01, 0.01, 0.98]

  References:
    Antoniou, Edwards & Storkey, "How to train your MAML", ICLR 2019, Section 4 (multi-step
    loss optimisation). https://arxiv.org/abs/1810.09502
  """
  if steps == 0:
    return jnp.zeros([0])
  progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(anneal_steps, 1), 0.0, 1.0)
  floor = 0.03 / steps
  others = jnp.maximum((1.0 / steps) * (1.0 - progress), floor)
  weights = jnp.full([steps], others)
  return weights.at[-1].set(1.0 - (steps - 1) * others)


def maml_plus_plus(
    model: Model,
    *,
    inner_lr: float = 0.01,
    steps: int = 5,
    learn_inner_lr: bool = True,
    multi_step_loss: bool = True,
    msl_anneal_steps: int = 10_000,
    loss: str | Loss = "cross_entropy",
    eval_steps: int | None = None,
    batch_norm: str = "transductive",
    remat: bool = False,
    first_order: bool = False,
) -> MetaLearner:
  """MAML++ pieces: learned per-layer per-step inner rates and the multi-step loss.

  Args:
    model: the learner.
    inner_lr: initial inner learning rate of every layer and step.
    steps: inner steps (also the test-time steps unless ``eval_steps``).
    learn_inner_lr: LSLR: one learned rate per parameter tensor and inner step.
    multi_step_loss: MSL: optimise a weighted sum of the query loss after every
      inner step (see :func:`multi_step_loss_weights`).
    msl_anneal_steps: outer steps over which MSL anneals to the final step.
    loss: task loss.
    eval_steps: inner steps at test time; must equal ``steps`` with LSLR.
    batch_norm: BatchNorm policy.
    remat: rematerialise inner steps.
    first_order: drop second-order terms.

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"model": params}``
    plus ``"inner_lr"`` (one ``[steps]`` vector per tensor) with LSLR.

  References:
    Antoniou, Edwards & Storkey, "How to train your MAML", ICLR 2019.
    https://arxiv.org/abs/1810.09502
  """
  inner_lr = check_positive(inner_lr, "inner_lr")
  steps = check_steps(steps, minimum=1)
  if learn_inner_lr and eval_steps not in (None, steps):
    raise ValueError(
        f"with learn_inner_lr=True there is one learned rate per inner step, so eval_steps must "
        f"equal steps={steps}, got eval_steps={eval_steps}; drop eval_steps or set "
        "learn_inner_lr=False."
    )
  anneal = check_steps(msl_anneal_steps, "msl_anneal_steps")
  if learn_inner_lr:
    init_extra = lambda adapted: {"inner_lr": jax.tree.map(
        lambda p: jnp.full([steps], inner_lr, jnp.float32), adapted)}
    # Each layer's rate vector broadcasts over that layer's tensor.
    make_optimizer = lambda meta_params, n_steps: learned_sgd(
        jax.tree.map(lambda lr, p: lr.reshape((steps,) + (1,) * jnp.ndim(p)),
                     meta_params["inner_lr"], meta_params["model"]), per_step=True)
  else:
    init_extra = lambda adapted: {}
    make_optimizer = lambda meta_params, n_steps: optax.sgd(inner_lr)
  return _gradient_based.build(
      model, name="maml_plus_plus", loss=loss, steps=steps, eval_steps=eval_steps,
      first_order=first_order, remat=remat, batch_norm=batch_norm, adapt_filter=None,
      init_extra=init_extra, inner_optimizer=make_optimizer,
      step_weights=(lambda step, n: multi_step_loss_weights(step, n, anneal))
      if multi_step_loss else None, masks=True,
  )
