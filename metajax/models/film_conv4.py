"""Conv-4 conditioned by FiLM on a context vector that arrives as constant extra input channels.

CAVIA (Zintgraf et al., ICML 2019) adapts a context vector ``phi`` per task and conditions its
image classifier on it by FiLM (Perez et al., AAAI 2018): after a block's convolution and
BatchNorm, every channel is scaled and shifted, ``h <- gamma(phi) * h + beta(phi)``, with
``gamma`` and ``beta`` a linear function of ``phi``. CAVIA's learner hands the context to any
model the same way, concatenated to every image as ``context_dim`` constant channels
(``metajax.algorithms.cavia.with_context``), so this network reads ``phi`` back from those
channels, convolves only the image channels, and lets the context act through FiLM alone.

Choices, and where they come from:

* **Where.** FiLM sits after BatchNorm and before the ReLU, as in the authors' released
  classifier (``CondConvNet.forward`` in github.com/lmzintgraf/cavia, ``classification/
  models.py``: conv -> BatchNorm -> [max-pool] -> FiLM -> ReLU). Here the max-pool stays after
  the ReLU, as in :class:`metajax.models.Conv4`; the two orders agree wherever a channel's scale
  is positive (a per-channel increasing affine map commutes with the max), which holds at
  initialisation. The authors' default conditions the third block only
  (``context_in=[False, False, True, False, False]``, ``num_context_params=100`` in their
  ``classification/arguments.py``): ``film_blocks=(2,)``. The default here conditions every
  block.
* **Initialisation.** ``gamma = 1 + W_gamma phi + b_gamma`` and ``beta = W_beta phi + b_beta``,
  with LeCun-normal ``W`` (variance ``1 / context_dim``, the variance of the authors'
  ``kaiming_uniform_(nonlinearity="linear")``) and zero ``b``: the context CAVIA starts every
  task from (``phi = 0``) gives exactly the plain Conv-4 at initialisation. The authors instead
  use ``gamma = W_gamma phi + b_gamma`` with PyTorch's default random bias, which starts each
  channel's scale near zero with a random sign. ``W`` is *not* zero: at ``W = 0`` the context's
  gradient vanishes, the inner loop leaves ``phi = 0`` and the meta-gradient of ``W`` is zero
  too, so ``W`` would never leave zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from metajax.models.conv4 import Conv4


class FiLMConv4(Conv4):
  """:class:`metajax.models.Conv4` whose blocks are scaled and shifted by a context vector (FiLM).

  Inputs are NHWC ``[n, H, W, C + context_dim]``: the image's ``C`` channels followed by
  ``context_dim`` channels holding the context ``phi`` (constant over examples and pixels, as
  ``metajax.algorithms.cavia.with_context`` makes them; the network reads their mean). The
  convolutions see the ``C`` image channels only. In every block listed in ``film_blocks`` the
  BatchNorm output ``h [n, h, w, c]`` becomes ``h * gamma + beta`` before the ReLU, with
  ``[gamma - 1, beta] = films[k](phi)`` (one ``nnx.Linear(context_dim, 2 c)`` per conditioned
  block, LeCun-normal kernel, zero bias), so ``phi = 0`` gives the plain network at
  initialisation. Outputs are ``[n, outputs]`` logits.

  Args:
    outputs: size of the linear head (``ways``).
    context_dim: length of ``phi``.
    input_shape: ``(H, W, C)`` of one image *without* the context channels.
    film_blocks: indices (0-3) of the blocks FiLM conditions; the authors' miniImageNet network
      conditions block 2 (the third) only.
    filters: channels per block.
    pooling: ``"max"`` or ``"stride"`` (see :class:`metajax.models.Conv4`).
    pooled_blocks: leading blocks that downsample.
    conv: ``"auto"``, ``"xla"`` or ``"matmul"`` convolutions.
    rngs: NNX random streams.

  Raises:
    ValueError: for ``context_dim < 1``, ``film_blocks`` that are empty, repeated or outside
      0-3, the :class:`metajax.models.Conv4` errors, or (when called) inputs whose channel count
      is not ``C + context_dim``.

  References:
    Zintgraf, Shiarlis, Kurin, Hofmann & Whiteson, "Fast Context Adaptation via Meta-Learning",
    ICML 2019, https://arxiv.org/abs/1810.03642 (and their code, github.com/lmzintgraf/cavia);
    Perez, Strub, de Vries, Dumoulin & Courville, "FiLM: Visual Reasoning with a General
    Conditioning Layer", AAAI 2018, https://arxiv.org/abs/1709.07871.
  """

  def __init__(
      self,
      outputs: int,
      *,
      context_dim: int,
      input_shape: Sequence[int] = (28, 28, 1),
      film_blocks: Sequence[int] = (0, 1, 2, 3),
      filters: int | Sequence[int] = 64,
      pooling: str = "max",
      pooled_blocks: int = 4,
      conv: str = "auto",
      rngs: nnx.Rngs,
  ):
    if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 1:
      raise ValueError(f"context_dim must be a positive int (the length of the context), got "
                       f"{context_dim!r}; e.g. context_dim=100.")
    blocks = tuple(film_blocks)
    if (not blocks or len(set(blocks)) != len(blocks)
        or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 3
                   for b in blocks)):
      raise ValueError(f"film_blocks must list distinct block indices in 0-3, got "
                       f"{film_blocks!r}; e.g. (0, 1, 2, 3) for every block or (2,) for the "
                       "third only, as in the CAVIA authors' miniImageNet network.")
    super().__init__(outputs, input_shape=input_shape, filters=filters, pooling=pooling,
                     pooled_blocks=pooled_blocks, conv=conv, rngs=rngs)
    self.context_dim, self.film_blocks = context_dim, tuple(sorted(blocks))
    self.films = nnx.List([
        nnx.Linear(context_dim, 2 * self.norms[b].num_features, rngs=rngs)
        for b in self.film_blocks
    ])

  def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    """Runs the network on ``[n, H, W, C + context_dim]``; ``mask [n]`` as in ``Conv4``."""
    channels = self.input_shape[-1]
    if x.shape[-1] != channels + self.context_dim:
      raise ValueError(
          f"FiLMConv4 takes images with C + context_dim = {channels} + {self.context_dim} "
          f"channels (the context in the last {self.context_dim}), got inputs of shape "
          f"{tuple(x.shape)}; concatenate the context to every image (metajax.algorithms.cavia "
          "does) or build the network with the matching input_shape and context_dim.")
    context = jnp.mean(x[..., channels:], axis=tuple(range(x.ndim - 1)))
    film = {b: layer(context) for b, layer in zip(self.film_blocks, self.films)}

    def modulate(i: int, h: jax.Array) -> jax.Array:
      if i not in film:
        return h
      scale, shift = jnp.split(film[i].astype(h.dtype), 2)
      return h * (1 + scale) + shift

    return self._forward(x[..., :channels], mask, modulate)
