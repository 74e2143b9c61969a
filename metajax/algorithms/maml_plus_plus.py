"""MAML++: learned per-layer per-step inner rates (LSLR), the multi-step loss (MSL) and
per-step BatchNorm weights (BNWB) and running statistics (BNRS)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms import _gradient_based, _per_step_batch_norm
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
    per_step_bn_weights: bool = False,
    per_step_bn_stats: bool = False,
    running_stats_at_test: bool = False,
) -> MetaLearner:
  """MAML++: learned per-step inner rates, the multi-step loss and per-step BatchNorm.

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
    per_step_bn_weights: BNWB: one BatchNorm scale and shift per inner step, meta-learned and
      left unchanged by the inner loop. Inner step ``k`` (and the multi-step query loss after
      ``k`` updates) uses copy ``k``; the query after the last step uses copy ``steps``, so
      there are ``steps + 1`` copies (see ``metajax.algorithms._per_step_batch_norm`` for why one
      more than the paper's ``steps``). Needs a model with BatchNorm.
    per_step_bn_stats: BNRS: one set of BatchNorm running statistics per inner step (and one
      for the final query pass), updated in meta-training from that step's batch statistics,
      averaged over the task batch, with the model's BatchNorm momentum
      (``momentum * old + (1 - momentum) * batch``; 0.9 for Conv-4). The statistics are
      learner state (``state_keys`` of :class:`metajax.MetaLearner`): the meta-step sets them
      and the outer optimizer never sees them. Needs a model with BatchNorm and
      ``batch_norm="transductive"``. Whether they normalise anything is
      ``running_stats_at_test``.
    running_stats_at_test: with ``per_step_bn_stats``, ``adapt``, ``predict`` and ``evaluate``
      normalise by each step's running statistics, as Section 4 describes, so a query's
      prediction no longer depends on the other queries. Off by default, as in the authors'
      released code (HowToTrainYourMAMLPytorch normalises every pass, at test too, by the
      batch's own statistics and restores the running statistics after evaluating): a model
      meta-trained on batch statistics can break when tested on running ones. On Omniglot
      5w1s, 1,565 meta-steps with both per-step options (H200, 2026-11-29) tested at
      22.80 +- 1.03 % this way, the test-time inner loop diverging (query loss ~1e9); the same
      checkpoint tests at 96.39 +- 0.32 % with batch statistics, and 1,541 steps without the
      per-step options at 96.37 +- 0.35 % (configs/maml_plus_plus_omniglot.py).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"model": params}``
    plus ``"inner_lr"`` (one ``[steps]`` vector per tensor) with LSLR. With
    ``per_step_bn_weights`` the BatchNorm scales and shifts move from ``"model"`` to
    ``"bn_weights"`` (leading axis ``steps + 1``); with ``per_step_bn_stats``,
    ``"bn_running_stats"`` holds ``model.state`` with a leading axis ``steps + 1``.

  Raises:
    ValueError: for ``eval_steps`` other than ``steps`` with LSLR or per-step BatchNorm, a
      per-step BatchNorm option on a model without BatchNorm, ``per_step_bn_stats`` with
      ``batch_norm="frozen"``, or ``running_stats_at_test`` without ``per_step_bn_stats``.

  Example:
    All four MAML++ components on a narrow Conv-4 (2 inner steps, so 3 BatchNorm copies):

    >>> import metajax, jax
    >>> model = metajax.models.conv4_model(5, jax.random.key(0), filters=8)
    >>> learner = metajax.maml_plus_plus(model, steps=2, per_step_bn_weights=True,
    ...                                  per_step_bn_stats=True)
    >>> params = learner.init()
    >>> sorted(params), params["bn_weights"]["norms"][0]["scale"].shape
    (['bn_running_stats', 'bn_weights', 'inner_lr', 'model'], (3, 8))
    >>> learner.state_keys
    ('bn_running_stats',)

  References:
    Antoniou, Edwards & Storkey, "How to train your MAML", ICLR 2019, Section 4 (LSLR, MSL,
    "Per-Step Batch Normalization Running Statistics" and "Per-Step Batch Normalization
    Weights and Biases"). https://arxiv.org/abs/1810.09502
  """
  inner_lr = check_positive(inner_lr, "inner_lr")
  steps = check_steps(steps, minimum=1)
  per_step_bn = per_step_bn_weights or per_step_bn_stats
  if running_stats_at_test and not per_step_bn_stats:
    raise ValueError(
        "running_stats_at_test=True normalises test passes by the per-step running statistics, "
        "which only per_step_bn_stats=True keeps; set per_step_bn_stats=True or drop "
        "running_stats_at_test.")
  if per_step_bn and eval_steps not in (None, steps):
    raise ValueError(
        f"with per-step BatchNorm (per_step_bn_weights/per_step_bn_stats) there is one BatchNorm "
        f"copy per inner step, so eval_steps must equal steps={steps}, got "
        f"eval_steps={eval_steps}; drop eval_steps or the per-step BatchNorm options."
    )
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
  weights = ((lambda step, n: multi_step_loss_weights(step, n, anneal))
             if multi_step_loss else None)
  if per_step_bn:
    return _per_step_batch_norm.build(
        model, name="maml_plus_plus", loss=loss, steps=steps, first_order=first_order,
        remat=remat, batch_norm=batch_norm, per_step_bn_weights=per_step_bn_weights,
        per_step_bn_stats=per_step_bn_stats, running_stats_at_test=running_stats_at_test,
        init_extra=init_extra,
        inner_optimizer=make_optimizer, step_weights=weights)
  return _gradient_based.build(
      model, name="maml_plus_plus", loss=loss, steps=steps, eval_steps=eval_steps,
      first_order=first_order, remat=remat, batch_norm=batch_norm, adapt_filter=None,
      init_extra=init_extra, inner_optimizer=make_optimizer, step_weights=weights, masks=True,
  )
