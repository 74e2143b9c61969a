"""ResNet-12: the residual backbone of TADAM and MetaOptNet, in Flax NNX."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from metajax.core.learner import Model, from_nnx
from metajax.models import _conv
from metajax.models._pool import max_pool_2x2
from metajax.models.conv4 import _norm_mask


class ResidualBlock(nnx.Module):
  """Three 3x3 conv -> BatchNorm (-> leaky ReLU) layers, a 1x1 conv + BatchNorm shortcut, a
  leaky ReLU and a 2x2 max-pool.

  Args:
    in_channels: input channels.
    channels: output channels.
    slope: leaky ReLU negative slope (0.1 in Lee et al. 2019).
    conv: convolution implementation, ``"auto"``, ``"xla"`` or ``"matmul"`` (see
      :class:`ResNet12`).
    rngs: NNX random streams.
  """

  def __init__(self, in_channels: int, channels: int, *, slope: float, conv: str = "auto",
               rngs: nnx.Rngs):
    sizes = [in_channels, channels, channels, channels]
    conv_fn = _conv.resolve(conv)
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), padding="SAME", use_bias=False,
                                    conv_general_dilated=conv_fn, rngs=rngs)
                           for a, b in zip(sizes[:-1], sizes[1:])])
    self.norms = nnx.List([nnx.BatchNorm(channels, momentum=0.9, rngs=rngs) for _ in range(3)])
    self.shortcut = nnx.Conv(in_channels, channels, (1, 1), use_bias=False,
                             conv_general_dilated=conv_fn, rngs=rngs)
    self.shortcut_norm = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
    self.slope = slope

  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    residual = self.shortcut(x)
    residual = self.shortcut_norm(residual, mask=_norm_mask(mask, residual))
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = conv(x)
      x = norm(x, mask=_norm_mask(mask, x))
      if i < 2:
        x = jax.nn.leaky_relu(x, self.slope)
    x = jax.nn.leaky_relu(x + residual, self.slope)
    return max_pool_2x2(x, "VALID")


class ResNet12(nnx.Module):
  """Four residual blocks (widths 64-160-320-640 by default) and an optional linear ``head``.

  Inputs are NHWC ``[n, H, W, C]``; 84x84 inputs give 5x5 feature maps, 28x28 give 1x1.
  Outputs are ``[n, outputs]`` logits, or embeddings when ``outputs`` is ``None``: flattened
  (``[n, 5*5*640]`` at 84x84, as in MetaOptNet), globally average-pooled (``global_pool=True``,
  ``[n, 640]``, as in TADAM), or feature maps (``flatten=False``). DropBlock is not included.

  Args:
    outputs: size of the linear ``head`` (``ways``), or ``None``.
    input_shape: ``(H, W, C)`` of one input.
    widths: channels of the four blocks; ``(64, 128, 256, 512)`` is Oreshkin et al.'s.
    slope: leaky ReLU negative slope.
    global_pool: average the final feature map over space.
    flatten: flatten the embedding (``False`` keeps ``[n, h, w, c]``; needs no pooling/head).
    conv: convolution implementation, see ``metajax.models._conv.resolve``: ``"xla"``
      (``lax.conv_general_dilated``), ``"matmul"`` (patches and matmuls, fast gradients inside
      task loops on CPU) or ``"auto"`` (``"matmul"`` on CPU, ``"xla"`` elsewhere). All three
      compute the same function with the same parameters.
    rngs: NNX random streams.

  References:
    Oreshkin, Rodriguez & Lacoste, "TADAM: Task dependent adaptive metric for improved few-shot
    learning", NeurIPS 2018; Lee, Maji, Ravichandran & Soatto, "Meta-Learning with
    Differentiable Convex Optimization", CVPR 2019 (MetaOptNet).
  """

  def __init__(
      self,
      outputs: int | None,
      *,
      input_shape: Sequence[int] = (84, 84, 3),
      widths: Sequence[int] = (64, 160, 320, 640),
      slope: float = 0.1,
      global_pool: bool = False,
      flatten: bool = True,
      conv: str = "auto",
      rngs: nnx.Rngs,
  ):
    if len(input_shape) != 3:
      raise ValueError(f"input_shape must be (H, W, C), got {tuple(input_shape)}.")
    if len(widths) != 4:
      raise ValueError(f"widths must hold 4 block widths, got {tuple(widths)}.")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in widths):
      raise ValueError(f"widths must be positive integers (channels per block), got "
                       f"{tuple(widths)}; e.g. widths=(64, 160, 320, 640).")
    h, w = input_shape[:2]
    for _ in range(4):
      h, w = h // 2, w // 2
    if h * w == 0:
      raise ValueError(f"input_shape={tuple(input_shape)} is too small for 4 pooling blocks.")
    sizes = [int(input_shape[-1]), *(int(c) for c in widths)]
    _conv.resolve(conv)  # rejects an unknown ``conv`` before any layer is built
    self.blocks = nnx.List([ResidualBlock(a, b, slope=slope, conv=conv, rngs=rngs)
                            for a, b in zip(sizes[:-1], sizes[1:])])
    self.global_pool, self.flatten = global_pool, flatten
    self.feature_shape = (1, 1, sizes[-1]) if global_pool else (h, w, sizes[-1])
    features = self.feature_shape[0] * self.feature_shape[1] * self.feature_shape[2]
    self.head = None if outputs is None else nnx.Linear(features, outputs, rngs=rngs)

  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    """Runs the network; ``mask [n]`` (bool) limits BatchNorm statistics to the True rows."""
    for block in self.blocks:
      x = block(x, mask=mask)
    if self.global_pool:
      x = x.mean(axis=(1, 2), keepdims=True)
    if self.head is None and not self.flatten:
      return x
    x = x.reshape(x.shape[0], -1)
    return x if self.head is None else self.head(x)


def resnet12_model(
    outputs: int | None,
    key: jax.Array,
    *,
    input_shape: Sequence[int] = (84, 84, 3),
    widths: Sequence[int] = (64, 160, 320, 640),
    global_pool: bool = False,
    flatten: bool = True,
    conv: str = "auto",
) -> Model:
  """A :class:`metajax.Model` for a :class:`ResNet12` network.

  Args:
    outputs: ``ways`` for a classifier with a linear ``head``, or ``None`` for an embedding.
    key: PRNG key for initialisation.
    input_shape: ``(H, W, C)``.
    widths: block widths.
    global_pool: average-pool the final feature map.
    flatten: flatten the embedding.
    conv: ``"auto"``, ``"xla"`` or ``"matmul"`` convolutions (see :class:`ResNet12`).

  Returns:
    The model; its state holds the BatchNorm statistics.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = resnet12_model(None, jax.random.key(0), input_shape=(28, 28, 1),
    ...                        widths=(8, 8, 8, 8))
    >>> apply = jax.jit(model.apply, static_argnames="train")
    >>> apply(model.params, model.state, jnp.zeros((2, 28, 28, 1)), train=True)[0].shape
    (2, 8)

  References:
    Oreshkin, Rodriguez & Lacoste, "TADAM: Task dependent adaptive metric for improved few-shot
    learning", NeurIPS 2018; Lee et al., "Meta-Learning with Differentiable Convex
    Optimization", CVPR 2019.
  """
  return from_nnx(ResNet12(outputs, input_shape=input_shape, widths=widths,
                           global_pool=global_pool, flatten=flatten, conv=conv,
                           rngs=nnx.Rngs(key)))
