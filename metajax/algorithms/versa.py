"""VERSA: amortized Gaussian posteriors over each class's weights, Monte Carlo predictive."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.algorithms import _amortized, _metric
from metajax.core._checks import check_positive, check_steps
from metajax.core.learner import Model
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array, PRNGKey


class WeightPosterior(NamedTuple):
  """VERSA's task-specific state: ``q(w_c, b_c | D_c)`` per class and weights drawn from it.

  Attributes:
    mean: ``[ways, d + 1]`` posterior means of each class's ``[w_c, b_c]``.
    log_variance: ``[ways, d + 1]`` posterior log-variances (diagonal Gaussian).
    weights: ``[samples, d, ways]`` sampled linear heads.
    bias: ``[samples, ways]`` sampled biases.
  """

  mean: Array
  log_variance: Array
  weights: Array
  bias: Array


def sample_heads(posterior_mean: Array, log_variance: Array, noise: Array) -> tuple[Array, Array]:
  """Reparameterised samples ``mean + exp(log_variance / 2) * noise``.

  Args:
    posterior_mean: ``[ways, d + 1]``.
    log_variance: ``[ways, d + 1]``.
    noise: ``[samples, ways, d + 1]`` standard normal draws; ``noise[l, c]`` is the draw of the
      class in column ``c``.

  Returns:
    ``(weights [samples, d, ways], bias [samples, ways])``.
  """
  draws = posterior_mean + jnp.exp(0.5 * log_variance) * noise
  return jnp.swapaxes(draws[..., :-1], -1, -2), draws[..., -1]


def predictive_log_probabilities(features: Array, weights: Array, bias: Array,
                                 scale: Array | float = 1.0) -> Array:
  """``log (1/L) sum_l softmax(scale (f W_l + b_l))``, the Monte Carlo predictive ``[n, ways]``.

  Computed as ``logsumexp_l log_softmax(...) - log L``, stable for any number of samples.

  Args:
    features: ``[n, d]`` query embeddings.
    weights: ``[L, d, ways]`` sampled heads.
    bias: ``[L, ways]`` sampled biases.
    scale: logit scale.
  """
  logits = scale * (jnp.einsum("nd,ldw->lnw", features, weights) + bias[:, None, :])
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(weights.shape[0])


def versa(
    embedding: Model,
    *,
    ways: int,
    features: int,
    samples: int = 10,
    test_samples: int = 100,
    hidden: int = 256,
    init_log_variance: float = -6.0,
    init_scale: float = 2.0,
    batch_norm: str = "transductive",
    key: jax.Array | None = None,
) -> MetaLearner:
  """VERSA: an amortization network maps each class's support set to a Gaussian over its weights.

  For class ``c`` the support embeddings are mean-pooled, ``h_c = mean_{i in c} f(x_i)``, and a
  network shared by the classes (two ELU layers) gives the mean and log-variance of a diagonal
  Gaussian ``q(w_c, b_c | D_c)`` over that class's column of a linear head. Each class's
  posterior depends on that class's examples only (VERSA's context-independent approximation),
  so renaming classes permutes the posteriors and reordering the support set leaves them
  unchanged. The mean is written as ``w_c = h_c + dw_c``, ``b_c = db_c - ||w_c||^2 / 2`` with
  ``(dw_c, db_c)`` from the network, whose last layer starts at zero: the initial mean classifier
  is ProtoNet's (for ``scale = 2``; Gordon et al. map ``h_c`` to the mean directly, we add this
  skip connection so that short CPU budgets start from a sensible classifier). The log-variances
  start at ``init_log_variance``.

  The query predictive is the Monte Carlo estimate over ``L`` weight draws,
  ``p(y | x) = (1/L) sum_l softmax(scale (f(x) W_l + b_l))``, evaluated as ``logsumexp - log L``;
  draws are reparameterised (``mean + sigma * eps``) so the meta-gradient reaches the
  amortization network, and the loss is ``-log p(y | x)`` (ML-PIP; no KL term). ``samples`` draws
  are used in ``task_loss``, ``test_samples`` in ``adapt``/``evaluate``. The noise comes from the
  task's ``key`` (``key(0)`` when ``adapt``/``evaluate`` get none): ``eps[l, c]`` belongs to the
  class *column* ``c``, so with a fixed key, renaming the classes hands each class other noise
  and its predictions agree only in distribution (exactly when the noise is permuted along,
  see :func:`sample_heads`). Masked (padded) episodes give the unpadded episode's results:
  padding is left out of the class pools, and the noise's shape does not depend on the
  support size.

  Args:
    embedding: the embedding network (flattened outputs), e.g. ``conv4_model(None, key)``.
    ways: classes per episode (static; every class needs a support example).
    features: the embedding size ``d``.
    samples: ``L``, weight draws per task during meta-training.
    test_samples: weight draws in ``adapt`` and ``evaluate``.
    hidden: width of the amortization network.
    init_log_variance: initial log-variance of every weight.
    init_scale: initial logit scale (a meta-parameter).
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.
    key: PRNG key for the amortization network's initialisation (``key(0)`` when None).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding", "amortization",
    "scale"}``; ``adapt`` returns a :class:`WeightPosterior` and ``predict`` the log predictive
    probabilities ``[n, ways]``.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> learner = versa(embedding, ways=5, features=8, hidden=16)
    >>> sorted(learner.init()["amortization"])
    ['log_variance', 'mean', 'trunk']

  References:
    Gordon, Bronskill, Bauer, Nowozin & Turner, "Meta-Learning Probabilistic Inference for
    Prediction", ICLR 2019. https://arxiv.org/abs/1805.09921
  """
  ways = _amortized.check_required_ways(ways, "versa")
  features = _amortized.check_size(features, "features")
  hidden = _amortized.check_size(hidden, "hidden")
  samples = check_steps(samples, "samples", minimum=1)
  test_samples = check_steps(test_samples, "test_samples", minimum=1)
  init_scale = check_positive(init_scale, "init_scale")
  if not isinstance(init_log_variance, int | float) or not jnp.isfinite(init_log_variance):
    raise TypeError(f"init_log_variance must be a finite number, got {init_log_variance!r}.")
  keys = jax.random.split(jax.random.key(0) if key is None else key, 3)

  def init_extra():
    log_variance = _amortized.mlp_init(keys[2], [hidden, features + 1], zero_last=True)
    log_variance[-1]["b"] = jnp.full((features + 1,), init_log_variance, jnp.float32)
    return {"amortization": {
        "trunk": _amortized.mlp_init(keys[0], [features, hidden, hidden]),
        "mean": _amortized.mlp_init(keys[1], [hidden, features + 1], zero_last=True),
        "log_variance": log_variance},
        "scale": jnp.asarray(init_scale, jnp.float32)}

  def posterior(params, support_features, support_y):
    pooled = _metric.class_means(support_features, support_y, ways)
    trunk = jax.nn.elu(_amortized.mlp_apply(params["trunk"], pooled))
    delta = _amortized.mlp_apply(params["mean"], trunk)
    weights = pooled + delta[:, :-1]
    bias = delta[:, -1] - 0.5 * jnp.sum(weights * weights, axis=-1)
    mean = jnp.concatenate([weights, bias[:, None]], axis=-1)
    return mean, _amortized.mlp_apply(params["log_variance"], trunk)

  def fit(meta_params, support_features, support_y, key: PRNGKey | None, *, training, steps):
    del steps
    mean, log_variance = posterior(meta_params["amortization"], support_features, support_y)
    n_samples = samples if training else test_samples
    noise = jax.random.normal(jax.random.key(0) if key is None else key,
                              (n_samples, *mean.shape), mean.dtype)
    weights, bias = sample_heads(mean, log_variance, noise)
    return WeightPosterior(mean, log_variance, weights, bias)

  def score(meta_params, head, query_features):
    return predictive_log_probabilities(query_features, head.weights, head.bias,
                                        meta_params["scale"])

  return _amortized.build(embedding, name="versa", ways=ways, batch_norm=batch_norm,
                          init_extra=init_extra, fit=fit, score=score, masks=True)
