"""Transfer baselines: few-shot evaluators for any embedding, and supervised pretraining.

"A Closer Look at Few-shot Classification" (Chen et al., ICLR 2019) and "Rethinking Few-Shot
Image Classification" (Tian et al., ECCV 2020) showed that a network trained with plain
cross-entropy on all base classes, followed by a simple classifier fitted to each episode's
support set, rivals most meta-learners. This module holds both halves:

* **Evaluators**: :func:`baseline` (a linear head fine-tuned on the support embeddings),
  :func:`baseline_plus_plus` (a cosine-similarity head), :func:`linear_probe` (L2-regularised
  logistic regression on L2-normalised embeddings, solved to tolerance) and
  :func:`nearest_centroid` (cosine distance to class means, Meta-Baseline's classifier). Each is a
  :class:`metajax.MetaLearner` over an embedding (``{"embedding": params}``) built on the shared
  metric machinery (:mod:`metajax.algorithms._metric`), so :func:`metajax.evaluate_tasks` and the
  trainer score it on the same episodes as every other learner; the embedding is fixed while the
  head is fitted. Apply one to any run's embedding (a pretrained network, a meta-trained
  ProtoNet's) by putting its parameters under ``"embedding"``. Their ``task_loss`` is the query
  loss of the fitted head, differentiable in the embedding (through the unrolled fine-tuning for
  :func:`baseline`, by implicit differentiation of the optimum for :func:`linear_probe`), so they
  can also be meta-trained (MetaOptNet with a logistic-regression head, Lee et al. 2019).
* **Pretraining**: :func:`pretrain` is a learner whose "task" is a minibatch of labelled images
  of the base classes (global labels, see :func:`metajax.data.batch_sampler`) and whose
  ``task_loss`` is the cross-entropy of a classifier over all of them. The one-task contract and
  the compiled meta-step run it unchanged (a task batch of one minibatch); its
  ``adapt``/``predict``/``evaluate`` are those of an evaluator sharing the embedding parameters,
  so validation and testing during training score few-shot episodes as for any learner.

BatchNorm: metajax's models do not update running statistics, so a BatchNorm embedding is used
with ``batch_norm="transductive"`` (the default): support and query are embedded as one batch,
as ProtoNet does (see :mod:`metajax.algorithms._metric`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax.algorithms import _metric
from metajax.algorithms._gradient_based import check_batch_norm, check_model
from metajax.algorithms.protonet import protonet
from metajax.core._checks import check_labels, check_positive, check_steps, check_task_shapes
from metajax.core.learner import Model
from metajax.core.losses import accuracy, softmax_cross_entropy
from metajax.core.masks import check_masks
from metajax.core.meta_learner import MetaLearner, grad_of_task_loss
from metajax.core.types import Array, PyTree, Task


class LinearHead(NamedTuple):
  """A per-episode linear classifier, the task-specific state of the evaluators.

  Attributes:
    weights: ``[d, ways]`` class weights.
    bias: ``[ways]`` class biases (zeros for the cosine head, which has none).
    counts: ``[ways]`` support examples per class (absent classes are masked).

  Example:
    >>> import jax.numpy as jnp
    >>> head = LinearHead(jnp.eye(2), jnp.zeros(2), jnp.array([1.0, 1.0]))
    >>> (jnp.array([[0.2, 0.9]]) @ head.weights + head.bias).argmax(-1).tolist()
    [1]

  References:
    Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019;
    Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification: a Good
    Embedding Is All You Need?", ECCV 2020.
  """

  weights: Array
  bias: Array
  counts: Array


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """Rows of ``x [n, d]`` scaled to unit Euclidean norm (zero rows stay zero)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def _linear_logits(head: LinearHead, features: Array) -> Array:
  return _metric.mask_absent(features @ head.weights + head.bias, head.counts)


def _cosine_logits(head: LinearHead, features: Array, scale: float) -> Array:
  logits = scale * (l2_normalize(features) @ l2_normalize(head.weights.T).T)
  return _metric.mask_absent(logits, head.counts)


def _random_head(features: int, ways: int, seed: int, bias: bool) -> dict:
  """PyTorch ``nn.Linear``'s initialisation, U(-1/sqrt(d), 1/sqrt(d)), from a fixed seed."""
  bound = 1.0 / np.sqrt(features)
  kw, kb = jax.random.split(jax.random.key(seed))
  return {"w": jax.random.uniform(kw, (features, ways), jnp.float32, -bound, bound),
          "b": (jax.random.uniform(kb, (ways,), jnp.float32, -bound, bound) if bias
                else jnp.zeros((ways,), jnp.float32))}


def fine_tune_head(
    features: Array,
    labels: Array,
    ways: int,
    *,
    cosine: bool,
    steps: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    scale: float = 2.0,
    init_seed: int = 0,
) -> tuple[LinearHead, Array]:
  """Fits a linear or cosine head to ``features`` by ``steps`` full-batch SGD steps.

  The objective is the mean cross-entropy plus ``weight_decay / 2`` times the squared norm of
  the head (PyTorch's ``weight_decay``, bias included); classes without a support example are
  masked out, and so are examples labelled ``>= ways`` (padding). The loop is a ``lax.scan``,
  differentiable in ``features``.

  Args:
    features: ``[n, d]`` support embeddings.
    labels: ``[n]`` integer labels in ``[0, ways)``.
    ways: static number of classes.
    cosine: cosine-similarity head ``scale * cos(f, w_c)`` without bias (Baseline++), else a
      linear head ``f @ W + b`` (Baseline).
    steps: SGD steps.
    lr: step size.
    momentum: heavy-ball momentum.
    weight_decay: L2 coefficient.
    scale: the cosine head's logit scale.
    init_seed: seed of the initial head (the same for every episode).

  Returns:
    ``(head, losses)``: the fitted :class:`LinearHead` and the ``[steps + 1]`` regularised
    objective before each step and after the last.
  """
  counts = _metric.class_counts(labels, ways)
  # Labels >= ways mark padded rows of a masked episode (see _metric): left out of the mean.
  real = labels < ways
  targets = jnp.where(real, labels, 0)
  params = _random_head(features.shape[-1], ways, init_seed, bias=not cosine)
  optimizer = optax.sgd(lr, momentum=momentum or None)
  if cosine:
    params = {"w": params["w"]}

  def head_of(p):
    return LinearHead(p["w"], p.get("b", jnp.zeros((ways,), features.dtype)), counts)

  def objective(p):
    head = head_of(p)
    logits = _cosine_logits(head, features, scale) if cosine else _linear_logits(head, features)
    penalty = sum(jnp.sum(x * x) for x in jax.tree.leaves(p))
    return softmax_cross_entropy(logits, targets, real) + 0.5 * weight_decay * penalty

  grad = jax.value_and_grad(objective)

  def step(carry, _):
    p, opt_state = carry
    value, g = grad(p)
    updates, opt_state = optimizer.update(g, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), value

  (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
  return head_of(params), jnp.append(losses, objective(params))


def _head_fine_tuner(name: str, embedding: Model, *, cosine: bool, ways: int | None, steps: int,
                     lr: float, momentum: float, weight_decay: float, scale: float,
                     init_seed: int, batch_norm: str) -> MetaLearner:
  steps = check_steps(steps, "steps", minimum=1)
  lr = check_positive(lr, "lr")
  scale = check_positive(scale, "scale")
  if not 0 <= momentum < 1:
    raise ValueError(f"momentum must be in [0, 1), got {momentum!r}; 0.9 is Chen et al.'s value.")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")

  def fit(meta_params, features, labels, ways):
    del meta_params
    head, _ = fine_tune_head(features, labels, ways, cosine=cosine, steps=steps, lr=lr,
                             momentum=momentum, weight_decay=weight_decay, scale=scale,
                             init_seed=init_seed)
    return head

  def score(meta_params, head, features):
    del meta_params
    return _cosine_logits(head, features, scale) if cosine else _linear_logits(head, features)

  return _metric.build(embedding, name=name, ways=ways, batch_norm=batch_norm, flatten=True,
                       init_extra=dict, fit=fit, score=score, masks=True)


def baseline(
    embedding: Model,
    *,
    ways: int | None = None,
    steps: int = 100,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    init_seed: int = 0,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Baseline: a new linear head fine-tuned on each episode's support embeddings.

  The embedding is fixed; the head ``f @ W + b`` starts from PyTorch's ``nn.Linear``
  initialisation (a fixed seed) and takes ``steps`` full-batch SGD steps with momentum on the
  support cross-entropy plus weight decay (see :func:`fine_tune_head`). Chen et al. took 100
  epochs of mini-batches of 4 at ``lr=0.01``; full batches make every episode's fit one
  deterministic compiled loop, and the larger default step makes up for the fewer updates.

  Args:
    embedding: the embedding network (outputs are flattened).
    ways: static class width (``None``: the support size; absent classes are masked).
    steps: fine-tuning steps per episode.
    lr: SGD step size.
    momentum: SGD momentum.
    weight_decay: L2 coefficient of the head (Chen et al.: 1e-3).
    init_seed: seed of the head's initialisation.
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.

  Returns:
    A :class:`metajax.MetaLearner` with meta-parameters ``{"embedding": params}``; ``adapt``
    returns a :class:`LinearHead`.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> sorted(baseline(embedding, ways=5).init())
    ['embedding']

  References:
    Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019.
    https://arxiv.org/abs/1904.04232
  """
  return _head_fine_tuner("baseline", embedding, cosine=False, ways=ways, steps=steps, lr=lr,
                          momentum=momentum, weight_decay=weight_decay, scale=1.0,
                          init_seed=init_seed, batch_norm=batch_norm)


def baseline_plus_plus(
    embedding: Model,
    *,
    ways: int | None = None,
    steps: int = 100,
    lr: float = 0.5,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    scale: float = 2.0,
    init_seed: int = 0,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Baseline++: a cosine-similarity head fine-tuned on each episode's support embeddings.

  Logits are ``scale * cos(f(x), w_c)`` with one weight vector per class and no bias; the head is
  fitted as in :func:`baseline`. Chen et al. fix the scale at 2 for heads of at most 200
  classes (10 above).

  Args:
    embedding: the embedding network (outputs are flattened).
    ways: static class width (``None``: the support size).
    steps: fine-tuning steps per episode.
    lr: SGD step size.
    momentum: SGD momentum.
    weight_decay: L2 coefficient of the class vectors.
    scale: the logit scale.
    init_seed: seed of the head's initialisation.
    batch_norm: ``"transductive"`` or ``"frozen"``.

  Returns:
    A :class:`metajax.MetaLearner` with meta-parameters ``{"embedding": params}``; ``adapt``
    returns a :class:`LinearHead` (zero bias).

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> baseline_plus_plus(embedding, ways=5).name
    'baseline_plus_plus'

  References:
    Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019.
    https://arxiv.org/abs/1904.04232
  """
  return _head_fine_tuner("baseline_plus_plus", embedding, cosine=True, ways=ways, steps=steps,
                          lr=lr, momentum=momentum, weight_decay=weight_decay, scale=scale,
                          init_seed=init_seed, batch_norm=batch_norm)


# ----------------------------------------------------------------------------- linear probe


def _probe_objective(params, features, targets, present, l2):
  """``sum_i CE_i + l2/2 ||W||^2`` (sklearn's objective with ``C = 1 / l2``), plus two terms that
  change no prediction and make the optimum unique: ``(sum of present biases)^2 / 2`` (softmax
  is invariant to a common shift of the biases, so the optimum has that sum at zero) and
  ``||absent biases||^2 / 2`` (absent classes are masked out of the softmax)."""
  weights, bias = params
  logits = jnp.where(present, features @ weights + bias, _metric.ABSENT_LOGIT)
  data = -jnp.sum(targets * jax.nn.log_softmax(logits))
  shift = jnp.sum(jnp.where(present, bias, 0.0))
  absent = jnp.sum(jnp.where(present, 0.0, bias) ** 2)
  return data + 0.5 * l2 * jnp.sum(weights ** 2) + 0.5 * (shift ** 2 + absent)


def _tree_dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _conjugate_gradient(matvec, rhs, iterations):
  """``iterations`` steps of CG for a symmetric positive definite ``matvec`` (scan, no branch)."""
  zeros = jax.tree.map(jnp.zeros_like, rhs)

  def body(carry, _):
    x, r, p, rr = carry
    ap = matvec(p)
    alpha = jnp.where(rr > 0, rr / jnp.maximum(_tree_dot(p, ap), 1e-30), 0.0)
    x = jax.tree.map(lambda xi, pi: xi + alpha * pi, x, p)
    r = jax.tree.map(lambda ri, api: ri - alpha * api, r, ap)
    rr_new = _tree_dot(r, r)
    beta = jnp.where(rr > 0, rr_new / jnp.maximum(rr, 1e-30), 0.0)
    p = jax.tree.map(lambda ri, pi: ri + beta * pi, r, p)
    return (x, r, p, rr_new), None

  (x, *_), _ = jax.lax.scan(body, (zeros, rhs, rhs, _tree_dot(rhs, rhs)), None,
                            length=iterations)
  return x


def _newton_cg(objective, params, *, max_iter, cg_iter, tol):
  """Minimises a smooth strictly convex ``objective`` by Newton-CG with a backtracking line
  search, until the gradient norm is below ``tol`` or no step decreases the objective."""
  grad = jax.grad(objective)
  halvings = 0.5 ** jnp.arange(20, dtype=jnp.float32)

  def cond(state):
    i, _, gnorm, stalled = state
    return (i < max_iter) & (gnorm > tol) & ~stalled

  def body(state):
    i, p, _, _ = state
    g = grad(p)
    hvp = lambda v: jax.jvp(grad, (p,), (v,))[1]
    direction = _conjugate_gradient(hvp, jax.tree.map(jnp.negative, g), cg_iter)
    slope = _tree_dot(g, direction)
    direction = jax.lax.cond(slope < 0, lambda: direction,
                             lambda: jax.tree.map(jnp.negative, g))  # safeguard
    slope = jnp.minimum(slope, -_tree_dot(g, g))
    start = objective(p)
    trial = lambda a: objective(jax.tree.map(lambda x, d: x + a * d, p, direction))
    values = jax.vmap(trial)(halvings)
    accept = values <= start + 1e-4 * halvings * slope
    alpha = jnp.where(jnp.any(accept), halvings[jnp.argmax(accept)], 0.0)
    p = jax.tree.map(lambda x, d: x + alpha * d, p, direction)
    gnorm = jnp.sqrt(_tree_dot(grad(p), grad(p)))
    return i + 1, p, gnorm, alpha == 0

  g0 = grad(params)
  state = (jnp.zeros([], jnp.int32), params, jnp.sqrt(_tree_dot(g0, g0)), jnp.asarray(False))
  return jax.lax.while_loop(cond, body, state)[1]


def fit_logistic_regression(
    features: Array,
    labels: Array,
    ways: int,
    *,
    l2: float = 1.0,
    max_iter: int = 50,
    cg_iter: int | None = None,
    tol: float = 1e-6,
) -> LinearHead:
  """Multinomial logistic regression ``argmin sum_i CE(x_i W + b, y_i) + l2/2 ||W||^2``.

  The objective is scikit-learn's ``LogisticRegression(C=1/l2)`` (bias not penalised); it is
  solved by Newton-CG (Hessian-vector products, so no ``d * ways`` square matrix) with a
  backtracking line search to gradient norm ``tol``, inside ``lax.while_loop``, so it runs under
  ``jit`` and ``vmap``. The solution is differentiable in ``features`` by implicit
  differentiation of the optimality condition (``jax.lax.custom_root``): the gradient is that of
  the exact optimum, not of the iterations. The bias is returned centred (sum zero over present
  classes); classes without a support example get zero weights and are masked at prediction.

  Args:
    features: ``[n, d]`` inputs (the probe normalises them first).
    labels: ``[n]`` integer labels in ``[0, ways)``.
    ways: static number of classes.
    l2: regularisation weight against the *summed* cross-entropy (sklearn's ``1 / C``).
    max_iter: Newton iterations at most.
    cg_iter: conjugate-gradient steps per Newton step (default: ``(d + 1) * ways``, capped at 100).
    tol: stop when the gradient norm is below this.

  Returns:
    A :class:`LinearHead`: ``weights [d, ways]``, the centred ``bias [ways]`` and the support
    ``counts [ways]``.

  References:
    Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification: a Good
    Embedding Is All You Need?", ECCV 2020 (the probe). Nocedal & Wright, "Numerical
    Optimization", 2nd ed., Springer 2006, Section 7.1 (Newton-CG). Blondel et al., "Efficient
    and Modular Implicit Differentiation", NeurIPS 2022 (gradients of the optimum).
  """
  d = features.shape[-1]
  targets = _metric.one_hot(labels, ways)
  counts = targets.sum(axis=0)
  present = counts > 0
  l2 = jnp.asarray(l2, features.dtype)
  cg_iter = cg_iter or min((d + 1) * ways, 100)
  init = (jnp.zeros((d, ways), features.dtype), jnp.zeros((ways,), features.dtype))
  objective = lambda p: _probe_objective(p, features, targets, present, l2)
  gradient = jax.grad(objective)

  def solve(f, guess):
    del f
    return _newton_cg(objective, guess, max_iter=max_iter, cg_iter=cg_iter, tol=tol)

  def tangent_solve(linear, rhs):
    # ``linear`` is the Hessian (symmetric positive definite: the two bias terms fix the null
    # directions of the cross-entropy); enough CG steps solve it to float precision.
    # custom_linear_solve makes the (nonlinear-looking) CG iteration a transposable linear map.
    return jax.lax.custom_linear_solve(
        linear, rhs, lambda matvec, b: _conjugate_gradient(matvec, b, 2 * cg_iter),
        symmetric=True)

  weights, bias = jax.lax.custom_root(gradient, init, solve, tangent_solve)
  return LinearHead(weights, jnp.where(present, bias, 0.0), counts)


def linear_probe(
    embedding: Model,
    *,
    ways: int | None = None,
    l2: float = 1.0,
    normalize: bool = True,
    max_iter: int = 50,
    tol: float = 1e-6,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Linear probe: L2-regularised logistic regression on L2-normalised support embeddings.

  Per episode, :func:`fit_logistic_regression` fits ``softmax(x W + b)`` to the normalised
  support embeddings (Tian et al. used scikit-learn's ``LogisticRegression`` with its default
  ``C=1``, i.e. ``l2=1``); the query set is scored by the same normalisation and ``W, b``. The
  solver is in JAX, so episodes are probed batched on the device under ``jit``/``vmap``.

  Args:
    embedding: the embedding network (outputs are flattened).
    ways: static class width (``None``: the support size; absent classes are masked).
    l2: ``1 / C`` of scikit-learn: weight of ``||W||^2 / 2`` against the summed cross-entropy.
    normalize: scale embeddings to unit norm first (Tian et al.).
    max_iter: Newton iterations at most.
    tol: gradient-norm tolerance of the solver.
    batch_norm: ``"transductive"`` or ``"frozen"``.

  Returns:
    A :class:`metajax.MetaLearner` with meta-parameters ``{"embedding": params}``; ``adapt``
    returns a :class:`LinearHead`. ``task_loss`` (the query cross-entropy) is differentiable in
    the embedding through the optimum, so the probe can be meta-trained as well.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> linear_probe(embedding, ways=5).name
    'linear_probe'

  References:
    Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification: a Good
    Embedding Is All You Need?", ECCV 2020. https://arxiv.org/abs/2003.11539
  """
  l2 = check_positive(l2, "l2")
  tol = check_positive(tol, "tol")
  max_iter = check_steps(max_iter, "max_iter", minimum=1)
  prepare = l2_normalize if normalize else (lambda x: x)

  def fit(meta_params, features, labels, ways):
    del meta_params
    return fit_logistic_regression(prepare(features), labels, ways, l2=l2, max_iter=max_iter,
                                   tol=tol)

  def score(meta_params, head, features):
    del meta_params
    return _linear_logits(head, prepare(features))

  # Padded support rows reach fit with zero features and an out-of-range label (a zero target
  # row), which adds exactly nothing to the summed objective: masks are supported.
  return _metric.build(embedding, name="linear_probe", ways=ways, batch_norm=batch_norm,
                       flatten=True, init_extra=dict, fit=fit, score=score, masks=True)


def nearest_centroid(
    embedding: Model,
    *,
    ways: int | None = None,
    distance: str = "cosine",
    scale: float = 10.0,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Nearest centroid: classify by similarity to the class means of the support embeddings.

  This is :func:`metajax.protonet` (same code) used as an evaluator; with the default cosine
  similarity and logit ``scale`` it is Meta-Baseline's classifier, whose meta-stage is ProtoNet
  training with ``distance="cosine"`` continued from the pretrained embedding.

  Args:
    embedding: the embedding network (outputs are flattened).
    ways: static class width (``None``: the support size).
    distance: ``"cosine"`` or ``"squared_euclidean"``.
    scale: initial logit scale of the cosine similarity (a meta-parameter ``"scale"``; it does
      not change the accuracy, only the loss).
    batch_norm: ``"transductive"`` or ``"frozen"``.

  Returns:
    A :class:`metajax.MetaLearner` named ``"nearest_centroid"``.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> sorted(nearest_centroid(embedding, ways=5).init())
    ['embedding', 'scale']

  References:
    Chen, Liu, Xu, Darrell & Wang, "Meta-Baseline: Exploring Simple Meta-Learning for Few-Shot
    Learning", ICCV 2021. https://arxiv.org/abs/2003.04390
  """
  learner = protonet(embedding, distance=distance, ways=ways, batch_norm=batch_norm,
                     init_scale=scale)
  return learner._replace(name="nearest_centroid")


EVALUATORS: dict[str, Callable[..., MetaLearner]] = {
    "baseline": baseline,
    "baseline_plus_plus": baseline_plus_plus,
    "linear_probe": linear_probe,
    "nearest_centroid": nearest_centroid,
}


def build_evaluator(name: str, embedding: Model, **kwargs) -> MetaLearner:
  """The evaluator called ``name`` (a key of ``EVALUATORS``) over ``embedding``.

  Args:
    name: a key of ``metajax.algorithms.transfer.EVALUATORS``, e.g. ``"linear_probe"``,
      ``"nearest_centroid"``, ``"baseline"`` or ``"baseline_plus_plus"``.
    embedding: the embedding network, a :class:`metajax.Model`.
    **kwargs: keyword arguments of that evaluator's factory (e.g. ``ways``, ``l2``).

  Returns:
    A :class:`metajax.MetaLearner` whose meta-parameters hold ``"embedding"``.

  Raises:
    ValueError: for a ``name`` that is not an evaluator.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> build_evaluator("linear_probe", embedding, ways=5, l2=0.5).name
    'linear_probe'
  """
  if name not in EVALUATORS:
    raise ValueError(f"evaluator {name!r} is not one of {sorted(EVALUATORS)}; pick one of them.")
  return EVALUATORS[name](embedding, **kwargs)


# ----------------------------------------------------------------------------- pretraining


def pretrain(
    embedding: Model,
    *,
    classes: int,
    features: int,
    evaluator: str | MetaLearner = "linear_probe",
    evaluator_kwargs: dict | None = None,
    classifier: str = "linear",
    scale: float = 10.0,
    ways: int | None = None,
    batch_norm: str = "transductive",
) -> MetaLearner:
  """Supervised pretraining on all base classes, evaluated by a few-shot evaluator.

  ``task_loss`` embeds a labelled minibatch (``support_x`` and ``query_x`` together, labels in
  ``[0, classes)``: the global class of every image, as :func:`metajax.data.batch_sampler`
  yields them) and returns the cross-entropy of a classifier over all ``classes`` on top of the
  embedding: linear ``f @ W + b`` (Baseline; Tian et al.) or ``scale * cos(f, w_c)``
  (Baseline++). ``adapt``, ``predict`` and ``evaluate`` are the evaluator's, on the same
  ``"embedding"`` parameters, so validation during training scores few-shot episodes. The
  classifier starts at zero (as big_vision's ``head_zeroinit``; the cosine one at a fixed random
  draw, since a zero vector has no direction).

  Args:
    embedding: the embedding network (outputs are flattened).
    classes: number of base classes (the classifier's width).
    features: size of the flattened embedding.
    evaluator: an evaluator name (see :data:`EVALUATORS`) or a :class:`metajax.MetaLearner` built
      on the same embedding whose meta-parameters hold ``"embedding"``.
    evaluator_kwargs: keyword arguments of the named evaluator (``ways`` and ``batch_norm`` are
      passed for you).
    classifier: ``"linear"`` or ``"cosine"``.
    scale: logit scale of the cosine classifier (Chen et al.: 10 above 200 classes).
    ways: static class width of the evaluator.
    batch_norm: ``"transductive"`` or ``"frozen"``.

  Returns:
    A :class:`metajax.MetaLearner` named ``"pretrain+<evaluator>"`` with meta-parameters
    ``{"embedding", "classifier": {"w", "b"}, **evaluator extras}``.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> learner = pretrain(embedding, classes=100, features=8, evaluator="nearest_centroid")
    >>> learner.name, sorted(learner.init())
    ('pretrain+nearest_centroid', ['classifier', 'embedding', 'scale'])

  References:
    Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019;
    Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification", ECCV
    2020.
  """
  embedding = check_model(embedding)
  train = check_batch_norm(batch_norm)
  for name, value in (("classes", classes), ("features", features)):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}.")
  if classifier not in ("linear", "cosine"):
    raise ValueError(f"classifier must be 'linear' or 'cosine', got {classifier!r}.")
  scale = check_positive(scale, "scale")
  if isinstance(evaluator, str):
    evaluator = build_evaluator(evaluator, embedding, ways=ways, batch_norm=batch_norm,
                                       **(evaluator_kwargs or {}))
  elif not isinstance(evaluator, MetaLearner):
    raise TypeError(f"evaluator must be a name in {sorted(EVALUATORS)} or a MetaLearner, got "
                    f"{type(evaluator).__name__}.")
  elif evaluator_kwargs:
    raise ValueError("evaluator_kwargs only apply to an evaluator given by name; build the "
                     "MetaLearner with them instead.")
  extras = evaluator.init()
  if "embedding" not in extras or (jax.tree.structure(extras["embedding"])
                                   != jax.tree.structure(embedding.params)):
    raise ValueError(f"the evaluator {evaluator.name!r} must hold this embedding's parameters "
                     "under 'embedding'; build it on the same embedding.")
  cosine = classifier == "cosine"
  state = embedding.state

  def init():
    head = (_random_head(int(features), int(classes), 0, bias=False) if cosine else
            {"w": jnp.zeros((features, classes), jnp.float32),
             "b": jnp.zeros((classes,), jnp.float32)})
    return {**evaluator.init(), "classifier": head}

  def logits_of(meta_params, x):
    out = embedding.apply(meta_params["embedding"], state, x, train=train)[0]
    out = out.reshape(out.shape[0], -1)
    head = meta_params["classifier"]
    if cosine:
      return scale * (l2_normalize(out) @ l2_normalize(head["w"].T).T)
    return out @ head["w"] + head["b"]

  def task_loss(meta_params, task, key, step):
    del key, step
    x = jnp.concatenate([task.support_x, task.query_x])
    y = jnp.concatenate([task.support_y, task.query_y])
    logits = logits_of(meta_params, x)
    return softmax_cross_entropy(logits, y), {"accuracy": accuracy(logits, y)}

  def check_task(tasks: Task) -> None:
    batched = np.ndim(tasks.support_y) > 1
    check_task_shapes(tasks, batched=batched)
    check_masks(tasks, supported=False, name=f"pretrain+{evaluator.name}",
                reason="pretraining takes unpadded minibatches")
    check_labels(tasks.support_y, classes, "support_y")
    check_labels(tasks.query_y, classes, "query_y")

  return MetaLearner(init, task_loss, grad_of_task_loss(task_loss), evaluator.adapt,
                     evaluator.predict, evaluator.evaluate, check_task,
                     f"pretrain+{evaluator.name}", predict_query=evaluator.predict_query)


def embedding_params(evaluator_learner: MetaLearner, params: PyTree) -> PyTree:
  """``evaluator_learner``'s meta-parameters with the embedding taken from ``params``.

  Any run whose meta-parameters hold ``"embedding"`` (ProtoNet, Matching Networks, R2D2,
  :func:`pretrain`, ...) can be scored by any evaluator this way; the evaluator's own extras
  (e.g. the nearest-centroid scale) keep their initial values.
  """
  if not isinstance(params, dict) or "embedding" not in params:
    raise ValueError("these meta-parameters hold no 'embedding' (a gradient-based learner's "
                     "network includes its head); evaluators need an embedding network's "
                     "parameters under 'embedding'.")
  return {**evaluator_learner.init(), "embedding": params["embedding"]}
