"""MAML (second order) and first-order MAML."""

from __future__ import annotations

from collections.abc import Callable

import optax

from metajax.algorithms import _gradient_based
from metajax.algorithms._inner_checks import check_second_order_safe
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
      give Adam-like optimizers ``eps_root > 0`` so meta-gradients stay finite: without
      ``first_order``, one whose update has a non-finite derivative at a zero gradient (a
      square root without ``eps_root``, e.g. ``optax.adam(lr)``) raises a ``ValueError``.
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
  user_optimizer = inner_optimizer is not None
  if inner_optimizer is None:
    inner_optimizer = optax.sgd(check_positive(inner_lr, "inner_lr"))
  learner = _gradient_based.build(
      model, name="fomaml" if first_order else "maml", loss=loss, steps=steps,
      eval_steps=eval_steps, first_order=first_order, remat=remat, batch_norm=batch_norm,
      adapt_filter=adapt_filter, init_extra=lambda adapted: {},
      inner_optimizer=lambda meta_params, n_steps: inner_optimizer, masks=True,
  )
  if user_optimizer and not first_order and steps:
    adapted = _gradient_based.split(
        model.params, _gradient_based.adapt_mask(model.params, adapt_filter))[0]
    check_second_order_safe(inner_optimizer, adapted, name="maml")
  return learner


def fomaml(model: Model, **kwargs) -> MetaLearner:
  """First-order MAML: :func:`maml` with ``first_order=True``.

  The meta-gradient is the query-loss gradient at the adapted parameters, without the
  second-order terms through the inner loop: cheaper in memory and time, usually close in accuracy.

  Args:
    model: the learner, see :func:`metajax.from_nnx`.
    **kwargs: any keyword argument of :func:`maml` except ``first_order`` (``inner_lr``,
      ``steps``, ``loss``, ...).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"model": params}``.

  Example:
    >>> import metajax, jax
    >>> model = metajax.models.mlp_model([8], 1, jax.random.key(0), input_dim=1)
    >>> sorted(metajax.fomaml(model, inner_lr=0.01, loss="mse").init())
    ['model']

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.2.
  """
  return maml(model, first_order=True, **kwargs)
