"""2-D convolution as patches and matmuls, for fast gradients inside compiled loops on CPU.

XLA:CPU runs a convolution's *kernel gradient* about 30x slower inside a loop body (``lax.map``,
``lax.scan``) than outside one, and per-task kernels under ``jax.vmap`` become grouped
convolutions (see ``benchmarks/README.md``). Here a convolution is written as

  ``y = im2col(x) @ w.reshape(kh * kw * c, o)``

where ``im2col`` gathers the ``kh * kw`` shifted, strided windows of the padded input with
slices, and its transpose ``col2im`` scatters them back with interior/edge pads and adds. Both
are linear and each one's VJP is the other, so every derivative of the convolution, of any order
(the kernel gradient ``im2col(x)^T @ g``, the input gradient ``col2im(g @ w^T)``, and the
second-order terms MAML needs), is again a matmul, an ``im2col`` or a ``col2im``: no convolution
primitive is left for XLA to lower inside a loop, and per-task kernels under ``vmap`` become
batched matmuls instead of grouped convolutions.

:func:`conv_general_dilated` is a drop-in for ``jax.lax.conv_general_dilated`` that takes this
path for what ``flax.nnx.Conv`` emits for 2-D NHWC/HWIO convolutions without dilation or groups
and falls back to XLA for anything else; pass it as ``nnx.Conv(..., conv_general_dilated=...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

_NHWC = ("NHWC", "HWIO", "NHWC")


class _Geometry(tuple):
  """Static description of a 2-D window gather: hashable, used as a ``nondiff`` argument."""

  __slots__ = ()

  def __new__(cls, in_hw, window, strides, pads):
    return super().__new__(cls, (tuple(in_hw), tuple(window), tuple(strides),
                                 tuple(tuple(p) for p in pads)))

  @property
  def out_hw(self) -> tuple[int, int]:
    (h, w), (kh, kw), (sh, sw), ((plo, phi), (qlo, qhi)) = self
    return (h + plo + phi - kh) // sh + 1, (w + qlo + qhi - kw) // sw + 1


def _im2col_impl(geometry: _Geometry, x: Array) -> Array:
  (_, _), (kh, kw), (sh, sw), pads = geometry
  ho, wo = geometry.out_hw
  xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
  n, c = x.shape[0], x.shape[-1]
  cols = [
      lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                (1, sh, sw, 1))
      for i in range(kh) for j in range(kw)
  ]
  return jnp.stack(cols, axis=3).reshape(n, ho, wo, kh * kw * c)


def _col2im_impl(geometry: _Geometry, cols: Array) -> Array:
  (h, w), (kh, kw), (sh, sw), ((plo, _), (qlo, _)) = geometry
  n, ho, wo, _ = cols.shape
  cols = cols.reshape(n, ho, wo, kh * kw, -1)
  total = None
  for i in range(kh):
    for j in range(kw):
      lo_h, lo_w = i - plo, j - qlo
      placed = lax.pad(
          cols[:, :, :, i * kw + j], jnp.zeros((), cols.dtype),
          [(0, 0, 0), (lo_h, h - lo_h - (ho - 1) * sh - 1, sh - 1),
           (lo_w, w - lo_w - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)])
      total = placed if total is None else total + placed
  return total


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def im2col(geometry: _Geometry, x: Array) -> Array:
  """``[n, h, w, c] -> [n, ho, wo, kh * kw * c]`` windows, ordered (kh, kw, c) like HWIO."""
  return _im2col_impl(geometry, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def col2im(geometry: _Geometry, cols: Array) -> Array:
  """The transpose of :func:`im2col`: sums every window entry back into its input pixel."""
  return _col2im_impl(geometry, cols)


im2col.defvjp(lambda g, x: (im2col(g, x), None), lambda g, _, ct: (col2im(g, ct),))
col2im.defvjp(lambda g, cols: (col2im(g, cols), None), lambda g, _, ct: (im2col(g, ct),))


def conv2d(x: Array, kernel: Array, strides: Sequence[int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = "SAME") -> Array:
  """NHWC x HWIO 2-D convolution as ``im2col(x) @ kernel``, differentiable to any order.

  Args:
    x: ``[n, h, w, c]`` inputs.
    kernel: ``[kh, kw, c, o]`` weights.
    strides: ``(sh, sw)``.
    padding: ``"SAME"``, ``"VALID"`` or explicit ``[(lo, hi), (lo, hi)]``.

  Returns:
    ``[n, ho, wo, o]``, equal to ``lax.conv_general_dilated`` with NHWC/HWIO dimension numbers.

  Example:
    >>> import jax.numpy as jnp
    >>> conv2d(jnp.ones((2, 28, 28, 1)), jnp.ones((3, 3, 1, 8)), (2, 2)).shape
    (2, 14, 14, 8)
  """
  kh, kw, c, o = kernel.shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], (kh, kw), tuple(strides), padding)
  geometry = _Geometry(x.shape[1:3], (kh, kw), strides, padding)
  cols = im2col(geometry, x)
  n, ho, wo, patch = cols.shape
  # One 2-D matmul: XLA:CPU runs the kernel gradient ``cols^T @ g`` 2-5x faster when it
  # contracts a single flattened axis than over the three (n, ho, wo) axes of an einsum.
  y = cols.reshape(n * ho * wo, patch) @ kernel.reshape(patch, o)
  return y.reshape(n, ho, wo, o)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, **kwargs):
  """Drop-in for ``lax.conv_general_dilated``: :func:`conv2d` where it applies, else XLA's.

  The matmul path is taken for 2-D convolutions in NHWC/HWIO layout without dilation, groups,
  ``precision`` or ``preferred_element_type`` (what ``flax.nnx.Conv`` emits by default).
  """
  if (lhs.ndim == 4 and _is_nhwc(dimension_numbers) and _trivial(lhs_dilation)
      and _trivial(rhs_dilation) and feature_group_count == 1 and batch_group_count == 1
      and precision is None and preferred_element_type is None
      and all(v is None for v in kwargs.values())):
    return conv2d(lhs, rhs, tuple(window_strides), padding)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type, **kwargs)


def auto_conv_general_dilated(*args, **kwargs):
  """:func:`conv_general_dilated` on CPU, ``lax.conv_general_dilated`` on other backends.

  The choice is made when the function is traced, from ``jax.default_backend()``.
  """
  if jax.default_backend() == "cpu":
    return conv_general_dilated(*args, **kwargs)
  return lax.conv_general_dilated(*args, **kwargs)


CONVS = ("auto", "xla", "matmul")


def resolve(conv: str):
  """The ``lax.conv_general_dilated``-compatible function for a ``conv=`` option.

  Args:
    conv: ``"xla"`` (``lax.conv_general_dilated``), ``"matmul"`` (:func:`conv_general_dilated`)
      or ``"auto"`` (``"matmul"`` on CPU, where it makes MAML-family meta-steps several times
      faster, ``"xla"`` elsewhere).
  """
  if conv not in CONVS:
    raise ValueError(f"conv must be one of {CONVS}, got {conv!r}.")
  return {"auto": auto_conv_general_dilated, "xla": lax.conv_general_dilated,
          "matmul": conv_general_dilated}[conv]


def _trivial(dilation) -> bool:
  return dilation is None or all(d == 1 for d in dilation)


def _is_nhwc(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _NHWC)
  return tuple(dimension_numbers) == _NHWC
