"""Multi-layer perceptron in Flax NNX."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from metajax.core.learner import Model, from_nnx


class MLP(nnx.Module):
  """ReLU MLP with a ``head`` output layer (the part ANIL adapts).

  Args:
    input_dim: input features (inputs are flattened after the batch axis).
    hidden: hidden layer widths, e.g. ``[40, 40]`` for MAML's sinusoid network.
    outputs: output features (1 for regression, ``ways`` for classification).
    rngs: NNX random streams.

  Attributes:
    layers: the hidden ``nnx.Linear`` layers, each followed by a ReLU.
    head: the output ``nnx.Linear`` layer (no activation).

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    ICML 2017, Section 5.1 (the ``[40, 40]`` ReLU network for sinusoid regression).
  """

  def __init__(self, input_dim: int, hidden: Sequence[int], outputs: int, *, rngs: nnx.Rngs):
    sizes = [input_dim, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = nnx.Linear(sizes[-1], outputs, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for layer in self.layers:
      x = jax.nn.relu(layer(x))
    return self.head(x)


def mlp_model(hidden: Sequence[int], outputs: int, key: jax.Array, *, input_dim: int) -> Model:
  """A :class:`metajax.Model` for an :class:`MLP`.

  Args:
    hidden: hidden layer widths, e.g. ``[40, 40]`` (MAML's sinusoid network); ``[]`` gives a
      linear model.
    outputs: output features (1 for regression, ``ways`` for classification).
    key: PRNG key for initialisation.
    input_dim: input features; inputs ``[n, ...]`` are flattened to ``[n, input_dim]``.

  Returns:
    The model (stateless: ``state`` holds no BatchNorm statistics); outputs are ``[n, outputs]``.

  Example:
    >>> model = mlp_model([40, 40], 1, jax.random.key(0), input_dim=1)
    >>> sorted(model.params)
    ['head', 'layers']
  """
  return from_nnx(MLP(input_dim, hidden, outputs, rngs=nnx.Rngs(key)))
