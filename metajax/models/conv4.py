"""Conv-4: the four-block convolutional backbone of few-shot learning, in Flax NNX."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from metajax.core.learner import Model, from_nnx
from metajax.models import _conv
from metajax.models._pool import max_pool_2x2

POOLINGS = ("max", "stride")


class Conv4(nnx.Module):
  """Four blocks of 3x3 conv -> BatchNorm -> ReLU -> 2x2 max-pool, with an optional ``head``.

  ``pooling="max"`` is the block of Vinyals et al. (2016) and Snell et al. (2017): a stride-1
  'SAME' convolution then a 2x2 max-pool (28x28 -> 1x1, 84x84 -> 5x5). ``pooling="stride"`` is
  MAML's Omniglot network: stride-2 'SAME' convolutions and no pooling (28x28 -> 2x2). Blocks
  after the first ``pooled_blocks`` keep their resolution (neither pool nor stride), as in the
  Relation Network's embedding (``pooled_blocks=2``).

  Inputs are NHWC ``[n, H, W, C]``. Outputs are ``[n, outputs]`` logits when ``outputs`` is an
  int, else embeddings: flattened ``[n, h*w*filters]`` or, with ``flatten=False``, feature maps
  ``[n, h, w, filters]``. BatchNorm uses batch statistics when the model runs with
  ``train=True`` (see :func:`metajax.from_nnx`).

  Args:
    outputs: size of the linear ``head`` (``ways``), or ``None`` for an embedding network.
    input_shape: ``(H, W, C)`` of one input.
    filters: channels of every block (64 in the papers), or one width per block.
    pooling: ``"max"`` or ``"stride"``.
    pooled_blocks: how many leading blocks downsample (4 by default).
    flatten: flatten the embedding (ignored with a head, which always flattens).
    conv: convolution implementation, see ``metajax.models._conv.resolve``: ``"xla"``
      (``lax.conv_general_dilated``), ``"matmul"`` (patches and matmuls, fast gradients inside
      task loops on CPU) or ``"auto"`` (``"matmul"`` on CPU, ``"xla"`` elsewhere).
    rngs: NNX random streams.

  Raises:
    ValueError: for an unknown ``pooling``, a malformed ``input_shape`` or ``filters``, or inputs
      too small for ``pooled_blocks`` downsamplings.

  References:
    Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, "Matching Networks for One Shot
    Learning", NeurIPS 2016; Snell, Swersky & Zemel, "Prototypical Networks for Few-shot
    Learning", NeurIPS 2017; Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML 2017 (the ``"stride"`` variant); Sung et al., "Learning
    to Compare: Relation Network for Few-Shot Learning", CVPR 2018 (``pooled_blocks=2``).
  """

  def __init__(
      self,
      outputs: int | None,
      *,
      input_shape: Sequence[int] = (28, 28, 1),
      filters: int | Sequence[int] = 64,
      pooling: str = "max",
      pooled_blocks: int = 4,
      flatten: bool = True,
      conv: str = "auto",
      rngs: nnx.Rngs,
  ):
    if pooling not in POOLINGS:
      raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if len(input_shape) != 3:
      raise ValueError(f"input_shape must be (H, W, C), got {tuple(input_shape)}.")
    if not 0 <= pooled_blocks <= 4:
      raise ValueError(f"pooled_blocks must be in [0, 4], got {pooled_blocks}.")
    widths = [filters] * 4 if isinstance(filters, int) else list(filters)
    if len(widths) != 4:
      raise ValueError(f"filters must be an int or 4 widths, got {filters!r}.")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in widths):
      raise ValueError(f"filters must be positive integers (channels per block), got {filters!r}; "
                       "e.g. filters=64 or filters=(32, 32, 64, 64).")
    self.pooling, self.pooled_blocks, self.flatten = pooling, pooled_blocks, flatten
    self.input_shape = tuple(int(d) for d in input_shape)
    channels = [self.input_shape[-1], *widths]
    self.convs = nnx.List([
        nnx.Conv(a, b, (3, 3), strides=2 if pooling == "stride" and i < pooled_blocks else 1,
                 padding="SAME", conv_general_dilated=_conv.resolve(conv), rngs=rngs)
        for i, (a, b) in enumerate(zip(channels[:-1], channels[1:]))
    ])
    self.norms = nnx.List([nnx.BatchNorm(b, momentum=0.9, rngs=rngs) for b in widths])
    self.feature_shape = _feature_shape(self.input_shape, widths[-1], pooling, pooled_blocks)
    features = self.feature_shape[0] * self.feature_shape[1] * self.feature_shape[2]
    if features == 0:
      raise ValueError(
          f"input_shape={self.input_shape} is too small for {pooled_blocks} downsampling blocks; "
          "use larger inputs or fewer pooled_blocks."
      )
    self.head = None if outputs is None else nnx.Linear(features, outputs, rngs=rngs)

  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    """Runs the network; ``mask [n]`` (bool) limits BatchNorm statistics to the True rows."""
    return self._forward(x, mask)

  def _forward(self, x: jax.Array, mask: jax.Array | None,
               modulate: Callable[[int, jax.Array], jax.Array] | None = None) -> jax.Array:
    """The blocks and head; ``modulate(i, h)`` rewrites block ``i``'s normalised maps ``h
    [n, h, w, c]`` before the ReLU (FiLM conditioning, :class:`metajax.models.FiLMConv4`)."""
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = conv(x)
      x = norm(x, mask=_norm_mask(mask, x))
      x = jax.nn.relu(x if modulate is None else modulate(i, x))
      if self.pooling == "max" and i < self.pooled_blocks:
        x = max_pool_2x2(x, "VALID")
    if self.head is None and not self.flatten:
      return x
    x = x.reshape(x.shape[0], -1)
    return x if self.head is None else self.head(x)


def _norm_mask(mask: jax.Array | None, x: jax.Array) -> jax.Array | None:
  """A ``[n]`` example mask broadcast to ``x`` ``[n, h, w, c]``, as BatchNorm's ``mask``."""
  if mask is None:
    return None
  return jnp.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)


def _feature_shape(input_shape, channels, pooling, pooled_blocks) -> tuple[int, int, int]:
  h, w = input_shape[:2]
  for _ in range(pooled_blocks):
    h, w = (h // 2, w // 2) if pooling == "max" else (-(-h // 2), -(-w // 2))
  return h, w, channels


def conv4_model(
    outputs: int | None,
    key: jax.Array,
    *,
    input_shape: Sequence[int] = (28, 28, 1),
    filters: int | Sequence[int] = 64,
    pooling: str = "max",
    pooled_blocks: int = 4,
    flatten: bool = True,
    conv: str = "auto",
) -> Model:
  """A :class:`metajax.Model` for a :class:`Conv4` network.

  Args:
    outputs: ``ways`` for a classifier with a linear ``head`` (MAML family), or ``None`` for an
      embedding network (metric learners).
    key: PRNG key for initialisation.
    input_shape: ``(H, W, C)``: ``(28, 28, 1)`` for Omniglot, ``(84, 84, 3)`` for miniImageNet.
    filters: channels per block.
    pooling: ``"max"`` (2x2 max-pool) or ``"stride"`` (stride-2 convolutions, MAML Omniglot).
    pooled_blocks: leading blocks that downsample.
    flatten: return flattened embeddings (``False``: feature maps, for the Relation Network).
    conv: ``"auto"``, ``"xla"`` or ``"matmul"`` convolutions (see :class:`Conv4`).

  Returns:
    The model; its state holds the BatchNorm statistics.

  Example:
    A narrow 5-way classifier (the papers use ``filters=64``), applied under ``jit``:

    >>> import jax, jax.numpy as jnp
    >>> model = conv4_model(5, jax.random.key(0), filters=8)
    >>> apply = jax.jit(model.apply, static_argnames="train")
    >>> apply(model.params, model.state, jnp.zeros((3, 28, 28, 1)), train=True)[0].shape
    (3, 5)

  References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016; Finn et al.,
    "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
  """
  return from_nnx(Conv4(outputs, input_shape=input_shape, filters=filters, pooling=pooling,
                        pooled_blocks=pooled_blocks, flatten=flatten, conv=conv,
                        rngs=nnx.Rngs(key)))
