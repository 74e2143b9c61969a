"""Matching Networks: attention over the support set, with optional full context embeddings."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from metajax.algorithms import _metric
from metajax.algorithms.protonet import cosine_similarity
from metajax.core._checks import check_positive, check_steps
from metajax.core.learner import Model, from_nnx
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array


class MatchingSupport(NamedTuple):
  """Matching Network's task-specific state.

  Attributes:
    features: ``[n_support, d]`` support embeddings ``g(x_i)`` (after the context LSTM).
    one_hot: ``[n_support, ways]`` support labels.
    support_raw: ``[n_support, d]`` embeddings before the context LSTM (read by ``f``).
  """

  features: Array
  one_hot: Array
  support_raw: Array


class FullContextEmbedding(nnx.Module):
  """Full context embeddings of Vinyals et al. (2016), Appendix A.

  ``g``: a bidirectional LSTM over the support embeddings ``g'(x_i)``, with the skip connection
  ``g(x_i) = h_fwd_i + h_bwd_i + g'(x_i)`` (the result depends on the support order, as in the
  paper). ``f``: an attention LSTM run for ``steps`` processing steps on each query embedding
  ``f'(x)``: ``h_k, c_k = LSTM([f'(x), r_{k-1}], (h_{k-1}, c_{k-1}))``, ``h_k <- h_k + f'(x)``,
  ``r_k = sum_i softmax_i(h_k . g(x_i)) g(x_i)``; ``f(x) = h_K``. The read-out ``r`` enters as
  LSTM input (the paper concatenates it to the hidden state); ``h_0 = c_0 = r_0 = 0``.

  Inputs are ``(support [n, d], query [m, d])``, or ``(support, query, real [n] bool)`` for a
  padded support set. With ``real``, the real rows, in their relative order, are the LSTMs'
  sequence: they are moved to the front by a stable sort, the forward LSTM stops after the last
  of them and the backward one starts there, so padding never reaches a carry; padded rows get
  no attention. The real rows' outputs then equal those of the support set without the padded
  rows; the padded rows' own outputs are meaningless (the caller masks them).

  Args:
    features: embedding size ``d``.
    steps: processing steps ``K`` of the attention LSTM.
    rngs: NNX random streams.
  """

  def __init__(self, features: int, *, steps: int, rngs: nnx.Rngs):
    self.forward = nnx.RNN(nnx.LSTMCell(features, features, rngs=rngs), rngs=False)
    self.backward = nnx.RNN(nnx.LSTMCell(features, features, rngs=rngs), reverse=True,
                            keep_order=True, rngs=False)
    self.query_cell = nnx.LSTMCell(2 * features, features, rngs=rngs)
    self.steps = steps

  def __call__(self, inputs: tuple[Array, ...]) -> tuple[Array, Array]:
    support, query, *rest = inputs
    real = rest[0] if rest else None
    context = support + self._bidirectional(support, real)
    zeros = jnp.zeros_like(query)
    carry, read = (zeros, zeros), zeros
    for _ in range(self.steps):
      carry, hidden = self.query_cell(carry, jnp.concatenate([query, read], axis=-1))
      hidden = hidden + query
      carry = (carry[0], hidden)
      similarity = hidden @ context.T
      if real is not None:
        similarity = jnp.where(real, similarity, _metric.ABSENT_LOGIT)
      read = jax.nn.softmax(similarity, axis=-1) @ context
    return context, carry[1]

  def _bidirectional(self, support: Array, real: Array | None) -> Array:
    """``h_fwd_i + h_bwd_i`` per support row (meaningless for padded rows)."""
    start = (jnp.zeros_like(support[:1]), jnp.zeros_like(support[:1]))
    if real is None:
      sequence = support[None]  # one sequence (batch 1) over the support set
      return (self.forward(sequence, initial_carry=start)[0]  # [0]: the batch of one
              + self.backward(sequence, initial_carry=start)[0])
    # Real rows first, in their order (a stable sort): a sequence of length sum(real). The
    # forward LSTM's outputs there never see the rows after it; the backward one starts at its
    # last row (flax reverses only the first seq_lengths steps), so padding reaches no carry.
    order = jnp.argsort(~real, stable=True)
    sequence, lengths = support[order][None], jnp.sum(real, dtype=jnp.int32)[None]
    both = (self.forward(sequence, initial_carry=start, seq_lengths=lengths)[0]
            + self.backward(sequence, initial_carry=start, seq_lengths=lengths)[0])
    return both[jnp.argsort(order)]  # back to the rows' own positions


def matching_net(
    embedding: Model,
    *,
    full_context: bool = False,
    features: int | None = None,
    processing_steps: int = 5,
    scale: float = 1.0,
    learn_scale: bool = False,
    ways: int | None = None,
    batch_norm: str = "transductive",
    key: jax.Array | None = None,
) -> MetaLearner:
  """Matching Networks: a query's class distribution is cosine attention over the support set.

  ``p(y | x) = sum_i a(x, x_i) onehot(y_i)`` with ``a = softmax_i(s cos(f(x), g(x_i)))``. Outputs
  (``predict``, and the logits behind ``loss``) are log class probabilities ``log p(y | x)``
  ``[n_query, ways]``, so ``exp`` of them sums to one over the classes; the loss is
  ``-log p(y | x)``. Without full context embeddings ``f = g =`` the embedding network.

  Support order and masks. Without full context embeddings the support set is a set: its order
  does not matter. With them it is a sequence read by a bidirectional LSTM, so the result depends
  on the support order (as in the paper). A masked (padded) episode gives the loss, accuracy and
  meta-gradient of the unpadded episode made of its real support rows **in their relative
  order** (padded rows may sit anywhere); the queries are independent of each other, so their
  order and padding never matter.

  Args:
    embedding: the embedding network (flattened outputs), e.g. ``conv4_model(None, key)``.
    full_context: add the full context embeddings (:class:`FullContextEmbedding`).
    features: embedding size ``d`` (required with ``full_context``: the LSTMs' width).
    processing_steps: ``K`` of the attention LSTM.
    scale: ``s``, the attention's inverse temperature. The paper uses ``1``; cosines lie in
      ``[-1, 1]``, so with ``s = 1`` the attention can never be sharp (5 supports: at most
      ``e / (e + 4/e) = 0.65`` on the nearest) and the loss stays high. A larger ``s`` (e.g.
      10) or a learned one trains much faster (metric scaling, Oreshkin et al., 2018).
    learn_scale: make ``s`` a meta-parameter ``"scale"``, initialised at ``scale``.
    ways: static class width, see :func:`metajax.protonet`.
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.
    key: PRNG key for the context LSTMs' initialisation (``key(0)`` when None).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding": params}`` plus
    ``"context"`` (the LSTMs) with ``full_context`` and ``"scale"`` with ``learn_scale``.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> sorted(matching_net(embedding, full_context=True, features=8).init())
    ['context', 'embedding']

  References:
    Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, "Matching Networks for One Shot
    Learning", NeurIPS 2016. https://arxiv.org/abs/1606.04080
    Oreshkin, Rodriguez & Lacoste, "TADAM: Task dependent adaptive metric for improved
    few-shot learning", NeurIPS 2018 (metric scaling). https://arxiv.org/abs/1805.10123
  """
  processing_steps = check_steps(processing_steps, "processing_steps", minimum=1)
  scale = check_positive(scale, "scale")
  context = None
  if full_context:
    if features is None:
      raise ValueError(
          "matching_net(full_context=True) needs features=<embedding size> to size the LSTMs; "
          "pass e.g. features=64 for Conv-4 on 28x28 inputs."
      )
    context = from_nnx(FullContextEmbedding(
        features, steps=processing_steps,
        rngs=nnx.Rngs(jax.random.key(0) if key is None else key)))

  def init_extra():
    extra = {} if context is None else {"context": jax.tree.map(jnp.array, context.params)}
    if learn_scale:
      extra["scale"] = jnp.asarray(scale, jnp.float32)
    return extra

  def fit(meta_params, support_features, labels, ways):
    one_hot = _metric.one_hot(labels, ways)
    if context is None:
      return MatchingSupport(support_features, one_hot, support_features)
    # Padded support rows (label ``ways``, see _metric) are left out of the LSTMs' sequence.
    g = context.apply(meta_params["context"], context.state,
                      (support_features, support_features[:1], labels < ways))[0][0]
    return MatchingSupport(g, one_hot, support_features)

  def score(meta_params, support, query_features):
    # Padded support rows (zero one-hot rows, see _metric) get no attention.
    real = support.one_hot.sum(axis=-1) > 0
    f = query_features
    if context is not None:
      f = context.apply(meta_params["context"], context.state,
                        (support.support_raw, query_features, real))[0][1]
    s = meta_params["scale"] if learn_scale else scale
    similarity = jnp.where(real, s * cosine_similarity(f, support.features), _metric.ABSENT_LOGIT)
    log_attention = jax.nn.log_softmax(similarity, axis=-1)
    return class_log_probabilities(log_attention, support.one_hot)

  return _metric.build(embedding, name="matching_net", ways=ways, batch_norm=batch_norm,
                       flatten=True, init_extra=init_extra, fit=fit, score=score,
                       masks=True)


def class_log_probabilities(log_attention: Array, one_hot: Array) -> Array:
  """``log sum_{i in c} a_i`` per class from ``[n_query, n_support]`` log-attention weights.

  Classes with no support example get :data:`metajax.algorithms._metric.ABSENT_LOGIT`.
  """
  probabilities = jnp.exp(log_attention) @ one_hot
  present = one_hot.sum(axis=0) > 0
  # The inner where keeps log() away from 0, so absent classes give no NaN gradients.
  return jnp.where(present, jnp.log(jnp.where(present, probabilities, 1.0)), _metric.ABSENT_LOGIT)
