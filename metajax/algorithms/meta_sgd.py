"""Meta-SGD: learn a learning rate for every parameter entry."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metajax.algorithms import _gradient_based
from metajax.core._checks import check_positive
from metajax.core.inner_loop import learned_sgd
from metajax.core.learner import Model
from metajax.core.losses import Loss
from metajax.core.meta_learner import MetaLearner


def meta_sgd(
    model: Model,
    *,
    inner_lr: float = 0.01,
    steps: int = 1,
    loss: str | Loss = "cross_entropy",
    eval_steps: int | None = None,
    batch_norm: str = "transductive",
    remat: bool = False,
    first_order: bool = False,
) -> MetaLearner:
  """Meta-SGD: the inner update is ``theta - alpha * grad`` with ``alpha`` meta-learned.

  ``alpha`` has the shape of the parameters (one rate per entry), starts at
  ``inner_lr`` and receives meta-gradients.

  Args:
    model: the learner.
    inner_lr: initial value of every learned rate.
    steps: inner steps.
    loss: task loss.
    eval_steps: inner steps at test time.
    batch_norm: BatchNorm policy.
    remat: rematerialise inner steps.
    first_order: drop second-order terms (the rates still get gradients).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are
    ``{"model": params, "inner_lr": rates}``.

  References:
    Li, Zhou, Chen & Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot
    Learning", 2017. https://arxiv.org/abs/1707.09835
  """
  inner_lr = check_positive(inner_lr, "inner_lr")
  return _gradient_based.build(
      model, name="meta_sgd", loss=loss, steps=steps, eval_steps=eval_steps,
      first_order=first_order, remat=remat, batch_norm=batch_norm, adapt_filter=None,
      init_extra=lambda adapted: {
          "inner_lr": jax.tree.map(lambda p: jnp.full_like(p, inner_lr), adapted)},
      inner_optimizer=lambda meta_params, n_steps: learned_sgd(meta_params["inner_lr"]),
      masks=True,
  )
