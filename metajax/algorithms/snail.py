"""SNAIL: a Simple Neural AttentIve meta-Learner reads the labelled support set as a sequence."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from metajax.algorithms import _amortized, _metric
from metajax.core.learner import Model, from_nnx
from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Array

# Mishra et al., Appendix (Omniglot): (key size, value size) of the three attention blocks.
PAPER_ATTENTION = ((64, 32), (256, 128), (512, 256))


class DenseBlock(nnx.Module):
  """A causal dilated convolution (kernel 2) with a gated activation, concatenated to its input."""

  def __init__(self, channels: int, filters: int, dilation: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(channels, 2 * filters, kernel_size=(2,), kernel_dilation=(dilation,),
                         padding="CAUSAL", rngs=rngs)
    self.dilation = dilation

  def __call__(self, x: Array) -> Array:
    # The causal convolution as two matmuls: XLA's CPU compiler takes minutes over the dilated
    # 1-D convolution of ~1,000 channels, and seconds over this.
    kernel, bias = self.conv.kernel[...], self.conv.bias[...]
    back = jnp.pad(x, ((self.dilation, 0), (0, 0)))[:x.shape[0]]
    return self._gate(x, back @ kernel[0] + x @ kernel[1] + bias)

  def extend(self, support: Array, queries: Array) -> Array:
    """The output at one more step after ``support``, for each row of ``queries`` on its own.

    The causal kernel reads the step ``dilation`` back (``kernel[0]``) and the step itself
    (``kernel[1]``); before the sequence start it reads zeros, as ``"CAUSAL"`` padding does.
    """
    kernel, bias = self.conv.kernel[...], self.conv.bias[...]
    n = support.shape[0]
    back = support[n - self.dilation] if n >= self.dilation else jnp.zeros_like(support[0])
    return self._gate(queries, back @ kernel[0] + queries @ kernel[1] + bias)

  @staticmethod
  def _gate(x: Array, convolved: Array) -> Array:
    values, gates = jnp.split(convolved, 2, axis=-1)
    return jnp.concatenate([x, jnp.tanh(values) * jax.nn.sigmoid(gates)], axis=-1)


class AttentionBlock(nnx.Module):
  """Causal single-head soft attention over the earlier steps, concatenated to its input."""

  def __init__(self, channels: int, key_size: int, value_size: int, *, rngs: nnx.Rngs):
    self.query = nnx.Linear(channels, key_size, rngs=rngs)
    self.key = nnx.Linear(channels, key_size, rngs=rngs)
    self.value = nnx.Linear(channels, value_size, rngs=rngs)
    self.key_size = key_size

  def __call__(self, x: Array) -> Array:
    logits = self.query(x) @ self.key(x).T / math.sqrt(self.key_size)
    steps = x.shape[0]
    causal = jnp.tril(jnp.ones((steps, steps), bool))
    weights = jax.nn.softmax(jnp.where(causal, logits, -1e30), axis=-1)
    return jnp.concatenate([x, weights @ self.value(x)], axis=-1)

  def extend(self, support: Array, queries: Array) -> Array:
    """The output at one more step after ``support``, for each row of ``queries`` on its own:
    each query attends to every support step and to itself."""
    query = self.query(queries) / math.sqrt(self.key_size)
    to_support = query @ self.key(support).T
    to_itself = jnp.sum(query * self.key(queries), axis=-1, keepdims=True)
    weights = jax.nn.softmax(jnp.concatenate([to_support, to_itself], axis=-1), axis=-1)
    read = weights[:, :-1] @ self.value(support) + weights[:, -1:] * self.value(queries)
    return jnp.concatenate([queries, read], axis=-1)


class Snail(nnx.Module):
  """SNAIL's sequence model: attention, TC block, attention, TC block, attention, linear read-out.

  A TC block is ``ceil(log2 T)`` dense blocks with dilations ``1, 2, 4, ...`` (Mishra et al.,
  Sec. 3 and Appendix), so the convolutions see the whole sequence of length ``T``.
  :meth:`sequence` runs the causal model over one sequence ``[T, channels]``. Calling the module
  on ``(support [n, channels], queries [q, channels])`` gives, for each query, the output at the
  step appended after the support steps, as ``sequence(concat(support, query))[-1]`` would,
  without re-running the support steps per query: the model is causal, so every layer's support
  activations do not depend on the query, and each query adds one step per layer.

  Args:
    channels: input channels per step (embedding size + ways).
    ways: outputs per step.
    length: ``T``, the sequence length the TC blocks are sized for.
    filters: output channels of each dense block.
    attention: ``(key_size, value_size)`` of each of the three attention blocks.
    rngs: NNX random streams.
  """

  def __init__(self, channels: int, ways: int, *, length: int, filters: int,
               attention: Sequence[tuple[int, int]], rngs: nnx.Rngs):
    dilations = [2 ** i for i in range(max(1, math.ceil(math.log2(length))))]
    layers = []
    for i, (key_size, value_size) in enumerate(attention):
      layers.append(AttentionBlock(channels, key_size, value_size, rngs=rngs))
      channels += value_size
      if i < len(attention) - 1:
        for dilation in dilations:
          layers.append(DenseBlock(channels, filters, dilation, rngs=rngs))
          channels += filters
    self.layers = nnx.List(layers)
    self.readout = nnx.Linear(channels, ways, rngs=rngs)

  def sequence(self, steps: Array) -> Array:
    """``[T, ways]`` outputs at every step of one causal sequence ``[T, channels]``."""
    for layer in self.layers:
      steps = layer(steps)
    return self.readout(steps)

  def __call__(self, inputs: tuple[Array, Array]) -> Array:
    support, queries = inputs
    for layer in self.layers:
      support, queries = layer(support), layer.extend(support, queries)
    return self.readout(queries)


class SupportSequence(NamedTuple):
  """SNAIL's task-specific state: the support steps every query is appended to.

  Attributes:
    steps: ``[n_support, d + ways]`` support embeddings concatenated with their one-hot labels,
      in the order the sequence model reads them.
  """

  steps: Array


def snail(
    embedding: Model,
    *,
    ways: int,
    features: int,
    shots: int = 1,
    filters: int = 128,
    attention: Sequence[tuple[int, int]] = PAPER_ATTENTION,
    shuffle: bool = True,
    batch_norm: str = "transductive",
    key: jax.Array | None = None,
) -> MetaLearner:
  """SNAIL: temporal convolutions and causal attention read the labelled support set.

  Each support example is one step of a sequence, its embedding concatenated with its one-hot
  label; the query is the last step, with its label slot zeroed, and the sequence model's output
  at that step are the query's logits (Mishra et al., Sec. 4.2). Queries are classified
  independently: each is appended on its own to the same support sequence, so no query sees
  another. The model is causal, so a support step never sees the query, and the support steps
  are run once for all queries (see :class:`Snail`). The
  embedding and the sequence model are trained end to end by the query cross-entropy. With
  ``shuffle`` the support steps are read in a random order drawn from the task's key (every
  call that has a key: ``task_loss``, and ``adapt``/``evaluate`` when given one), since episodes
  arrive sorted by class; without a key they are read as given.

  Args:
    embedding: the embedding network (flattened outputs), e.g. ``conv4_model(None, key)``.
    ways: classes per episode: the width of the label inputs and of the outputs, fixed by the
      parameters (every class needs a support example).
    features: the embedding size ``d``.
    shots: support examples per class the temporal convolutions are sized for,
      ``T = ways * shots + 1`` (other support sizes still work; attention sees every step).
    filters: output channels of each dense block (128 in the paper).
    attention: ``(key_size, value_size)`` of the three attention blocks (the paper's Omniglot
      sizes by default); any number of blocks, with a TC block between consecutive ones.
    shuffle: read the support set in a random order drawn from the key.
    batch_norm: ``"transductive"`` or ``"frozen"``, see :func:`metajax.protonet`.
    key: PRNG key for the sequence model's initialisation (``key(0)`` when None).

  Returns:
    A :class:`metajax.MetaLearner`; meta-parameters are ``{"embedding", "snail"}``; ``adapt``
    returns a :class:`SupportSequence`.

  Example:
    >>> import jax, metajax
    >>> embedding = metajax.models.conv4_model(None, jax.random.key(0), filters=8)
    >>> learner = snail(embedding, ways=5, features=8, filters=16, attention=((8, 8), (8, 8)))
    >>> sorted(learner.init())
    ['embedding', 'snail']

  References:
    Mishra, Rohaninejad, Chen & Abbeel, "A Simple Neural Attentive Meta-Learner", ICLR 2018.
    https://arxiv.org/abs/1707.03141
  """
  ways = _amortized.check_required_ways(ways, "snail")
  features = _amortized.check_size(features, "features")
  shots = _amortized.check_size(shots, "shots")
  filters = _amortized.check_size(filters, "filters")
  attention = tuple(attention)
  if not attention or any(len(pair) != 2 for pair in attention):
    raise ValueError(f"attention must be a non-empty sequence of (key_size, value_size) pairs, "
                     f"got {attention!r}; e.g. attention=((64, 32), (256, 128), (512, 256)).")
  attention = tuple((_amortized.check_size(k, "attention key_size"),
                     _amortized.check_size(v, "attention value_size")) for k, v in attention)
  sequence_model = from_nnx(Snail(
      features + ways, ways, length=ways * shots + 1, filters=filters, attention=attention,
      rngs=nnx.Rngs(jax.random.key(0) if key is None else key)))

  def init_extra():
    return {"snail": jax.tree.map(jnp.array, sequence_model.params)}

  def fit(meta_params, support_features, support_y, key, *, training, steps):
    del meta_params, training, steps
    sequence = jnp.concatenate([support_features, _metric.one_hot(support_y, ways)], axis=-1)
    if shuffle and key is not None:
      sequence = jax.random.permutation(key, sequence, axis=0)
    return SupportSequence(sequence)

  def score(meta_params, support, query_features):
    blank = jnp.zeros((query_features.shape[0], ways), query_features.dtype)
    queries = jnp.concatenate([query_features, blank], axis=-1)
    return sequence_model.apply(meta_params["snail"], sequence_model.state,
                                (support.steps, queries))[0]

  return _amortized.build(
      embedding, name="snail", ways=ways, batch_norm=batch_norm, init_extra=init_extra, fit=fit,
      score=score, mask_reason="its temporal convolutions and attention read the support set as "
      "a sequence of fixed length, where every position matters, so padding cannot be skipped")
