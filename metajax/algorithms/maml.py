"""MAML (second order) and first-order MAML."""

from __future__ import annotations

from collections.abc import Callable

import optax

from metajax.algorithms import _gradient_based
from metajax.core._checks import check_positive
from metajax.core.learner import Model
from metajax.core.losses import Loss
from metajax.core.meta_learner import MetaLearner


def maml(
    model: Model,
    *,
    inner_lr: float = 0.01,
    steps: int = 1,
    first_order: bool = False,
    inner_optimizer: optax.GradientTransformation | None = None,
    loss: str | Loss = "cross_entropy",
    eval_steps: int | None = None,
    batch_norm: str = "transductive",
    remat: bool = False,
    adapt_filter: Callable[[tuple[str, ...]], bool] | None = None,
) -> MetaLearner:
  """Model-Agnostic Meta-Learning: learn an initialisation that adapts in a few steps.

  The meta-gradient is the full second-order gradient through the inner loop
  unless ``first_order=True`` (FOMAML).

  Args:
    model: the learner, see :func:`metajax.from_nnx`.
    inner_lr: inner-loop SGD step size (alpha).
    steps: inner steps during meta-training.
    first_order: drop second-order terms (FOMAML).
    inner_optimizer: an optax transformation to use instead of ``sgd(inner_lr)``;
      give Adam/RMSProp ``eps_root > 0`` so meta-gradients stay finite.
    loss: ``"cross_entropy"`` (labels in ``[0, ways)``), ``"mse"`` or a Loss.
    eval_steps: inner steps at test time (default ``steps``).
    batch_norm: ``"transductive"`` (batch statistics per task) or ``"frozen"``.
    remat: rematerialise inner steps to save memory.
    adapt_filter: adapt only parameters whose key path it accepts (see ANIL).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"model": params}``.

  Example:
    >>> import metajax, jax
    >>> model = metajax.models.mlp_model([40, 40], 1, jax.random.key(0), input_dim=1)
    >>> learner = metajax.maml(model, inner_lr=0.01, steps=1, loss="mse")
    >>> sorted(learner.init())
    ['model']

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017. https://arxiv.org/abs/1703.03400
  """
  if inner_optimizer is None:
    inner_optimizer = optax.sgd(check_positive(inner_lr, "inner_lr"))
  return _gradient_based.build(
      model, name="fomaml" if first_order else "maml", loss=loss, steps=steps,
      eval_steps=eval_steps, first_order=first_order, remat=remat, batch_norm=batch_norm,
      adapt_filter=adapt_filter, init_extra=lambda adapted: {},
      inner_optimizer=lambda meta_params, n_steps: inner_optimizer, masks=True,
  )


def fomaml(model: Model, **kwargs) -> MetaLearner:
  """First-order MAML: :func:`maml` with ``first_order=True``.

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.2.
  """
  return maml(model, first_order=True, **kwargs)
