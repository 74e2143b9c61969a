"""A hypernetwork: a set encoder reads the support set and writes the task's classifier head."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms import _amortized, _metric
from metajax.core._checks import check_positive, check_steps
from metajax.core.inner_loop import inner_loop
from metajax.core.learner import Model
from metajax.core.losses import softmax_cross_entropy
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array


class GeneratedHead(NamedTuple):
  """The task network the hypernetwork writes.

  Attributes:
    weights: ``[d, ways]`` linear head (after any fine-tuning steps).
    bias: ``[ways]`` head bias.
    film_scale: ``[d]`` FiLM scale ``gamma`` of the embedding (zeros without FiLM).
    film_shift: ``[d]`` FiLM shift ``beta`` of the embedding (zeros without FiLM).
  """

  weights: Array
  bias: Array
  film_scale: Array
  film_shift: Array


def film(features: Array, head: GeneratedHead) -> Array:
  """``(1 + gamma) * f + beta``, the feature-wise modulation of the embedding."""
  return features * (1.0 + head.film_scale) + head.film_shift


def hypernetwork(
    embedding: Model,
    *,
    ways: int,
    features: int,
    hidden: int = 256,
    use_film: bool = False,
    finetune_steps: int = 0,
    inner_lr: float = 0.1,
    init_scale: float = 2.0,
    batch_norm: str = "transductive",
    key: jax.Array | None = None,
) -> MetaLearner:
  """A hypernetwork that writes a task's linear classification head from its support set.

  With ``f`` the embedding and ``m_c`` the mean support embedding of class ``c``, a DeepSets
  encoder (Zaheer et al.) reads the task: ``context = rho(mean_c phi(m_c))``, invariant to the
  order of the support examples and of the classes. A generator shared by all classes then
  writes each class's column of the head from its class mean and the shared context::

    [dw_c, db_c] = g([m_c, context]),  w_c = m_c + dw_c,  b_c = db_c - ||w_c||^2 / 2

  and the query logits are ``scale * (f(x) W + b)``. The last layer of ``g`` starts at zero, so
  training starts from the weights that imprinting writes (Qi et al.): ``w_c = m_c``, whose
  logits are ``-scale ||f(x) - m_c||^2 / 2`` up to a per-query constant, ProtoNet's classifier
  for ``scale = 2``; the generator learns the correction. With ``use_film`` the context also
  writes a FiLM modulation ``(1 + gamma) f + beta`` of every embedding (Perez et al.) before the
  class means are taken again for the head. With ``finetune_steps > 0`` the written head
  ``(W, b)`` is then fine-tuned by that many SGD steps on the support cross-entropy through
  :func:`metajax.inner_loop` (the embedding fixed), differentiated second order, as LEO refines
  its generated weights (Rusu et al.). Renaming the classes permutes the columns of the head,
  and with them the logits; reordering the support set changes nothing. Masked (padded)
  episodes give the unpadded episode's results: padding is left out of the class means and the
  fine-tuning loss (``metajax.algorithms._amortized``).

  Args:
    embedding: the embedding network (flattened outputs), e.g. ``conv4_model(None, key)``.
    ways: classes per episode (static; every class needs a support example).
    features: the embedding size ``d``.
    hidden: width of the encoder and generator networks (two layers each).
    use_film: also write a FiLM scale and shift of the embedding features.
    finetune_steps: inner SGD steps on the generated head during meta-training and, by
      default, at test (``adapt``/``evaluate`` take ``steps=`` to override).
    inner_lr: the step size of those steps.
    init_scale: initial logit scale (a meta-parameter; 2 makes the first classifier ProtoNet's).
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.
    key: PRNG key for the encoder's and generator's initialisation (``key(0)`` when None).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding", "hypernetwork",
    "scale"}``; ``adapt`` returns a :class:`GeneratedHead`.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> learner = hypernetwork(embedding, ways=5, features=8, hidden=16)
    >>> sorted(learner.init()["hypernetwork"])
    ['encoder', 'generator', 'summary']

  References:
    Ha, Dai & Le, "HyperNetworks", ICLR 2017. https://arxiv.org/abs/1609.09106
    Zaheer et al., "Deep Sets", NeurIPS 2017. https://arxiv.org/abs/1703.06114
    Qi, Brown & Lowe, "Low-Shot Learning with Imprinted Weights", CVPR 2018.
    https://arxiv.org/abs/1712.07136
    Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer", AAAI 2018.
    Rusu et al., "Meta-Learning with Latent Embedding Optimization", ICLR 2019.
    https://arxiv.org/abs/1807.05960
  """
  ways = _amortized.check_required_ways(ways, "hypernetwork")
  features = _amortized.check_size(features, "features")
  hidden = _amortized.check_size(hidden, "hidden")
  finetune_steps = check_steps(finetune_steps, "finetune_steps")
  inner_lr = check_positive(inner_lr, "inner_lr")
  init_scale = check_positive(init_scale, "init_scale")
  keys = jax.random.split(jax.random.key(0) if key is None else key, 4)

  def init_extra():
    params = {
        "encoder": _amortized.mlp_init(keys[0], [features, hidden, hidden]),
        "summary": _amortized.mlp_init(keys[1], [hidden, hidden]),
        "generator": _amortized.mlp_init(keys[2], [features + hidden, hidden, features + 1],
                                         zero_last=True),
    }
    if use_film:
      params["film"] = _amortized.mlp_init(keys[3], [hidden, hidden, 2 * features],
                                           zero_last=True)
    return {"hypernetwork": params, "scale": jnp.asarray(init_scale, jnp.float32)}

  def logits_of(meta_params, head, features):
    return meta_params["scale"] * (film(features, head) @ head.weights + head.bias)

  def write_head(params, support_features, support_y):
    means = _metric.class_means(support_features, support_y, ways)
    context = jnp.mean(_amortized.mlp_apply(params["encoder"], means), axis=0)
    context = _amortized.mlp_apply(params["summary"], jax.nn.elu(context))
    zeros = jnp.zeros((means.shape[-1],), means.dtype)
    scale, shift = zeros, zeros
    if use_film:
      scale, shift = jnp.split(_amortized.mlp_apply(params["film"], context), 2)
      modulated = support_features * (1.0 + scale) + shift
      means = _metric.class_means(modulated, support_y, ways)
    inputs = jnp.concatenate([means, jnp.broadcast_to(context, (ways, context.shape[0]))], -1)
    delta = _amortized.mlp_apply(params["generator"], inputs)
    weights = means + delta[:, :-1]
    bias = delta[:, -1] - 0.5 * jnp.sum(weights * weights, axis=-1)
    return GeneratedHead(weights.T, bias, scale, shift)

  def fit(meta_params, support_features, support_y, key, *, training, steps):
    del key
    head = write_head(meta_params["hypernetwork"], support_features, support_y)
    n_steps = finetune_steps if training or steps is None else check_steps(steps)
    if not n_steps:
      return head

    real = support_y < ways  # padded support rows carry the label ``ways`` (see _amortized)

    def support_loss(weights_and_bias):
      tuned = head._replace(weights=weights_and_bias[0], bias=weights_and_bias[1])
      return softmax_cross_entropy(logits_of(meta_params, tuned, support_features),
                                   jnp.where(real, support_y, 0), real)

    tuned = inner_loop(support_loss, (head.weights, head.bias), optax.sgd(inner_lr),
                       steps=n_steps).params
    return head._replace(weights=tuned[0], bias=tuned[1])

  def score(meta_params, head, query_features):
    return logits_of(meta_params, head, query_features)

  return _amortized.build(embedding, name="hypernetwork", ways=ways, batch_norm=batch_norm,
                          init_extra=init_extra, fit=fit, score=score, masks=True)

