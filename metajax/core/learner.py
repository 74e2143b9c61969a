"""Models as pure functions: ``apply(params, state, x, *, train) -> (y, state)``.

metajax differentiates through ``params`` only. Non-trainable state (BatchNorm
statistics) travels separately in ``state``.

BatchNorm policy. MAML and its family evaluate BatchNorm with the statistics of
the batch at hand (``train=True``) in the inner and the outer loop, so each
task's support and query batches are normalised by their own statistics and no
running averages are used (transductive; Finn et al. 2017, Antoniou et al. 2019).
Algorithms take ``batch_norm="transductive"`` (that policy, the default) or
``batch_norm="frozen"`` (``train=False``: the stored statistics in ``state``
are used and never updated, e.g. for a pretrained backbone).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from metajax.core._checks import check_float_params
from metajax.core.types import Array, PyTree


class Model(NamedTuple):
  """A pure model: an apply function with its initial parameters and state.

  Attributes:
    apply: ``apply(params, state, x, *, train) -> (outputs, new_state)`` for a
      batch ``x`` of one task.
    params: trainable parameter pytree of floating-point arrays.
    state: non-trainable state pytree (BatchNorm statistics); ``{}`` if none.

  Example:
    >>> import jax.numpy as jnp
    >>> model = Model(lambda p, s, x, *, train: (x * p["scale"], s), {"scale": jnp.array(2.0)}, {})
    >>> model.apply(model.params, model.state, jnp.ones(3), train=False)[0]
    Array([2., 2., 2.], dtype=float32)
  """

  apply: Callable[..., tuple[Array, PyTree]]
  params: PyTree
  state: PyTree


def from_function(fn: Callable[[PyTree, Array], Array], params: PyTree) -> Model:
  """Wraps a stateless ``fn(params, x) -> outputs`` as a :class:`Model`.

  Args:
    fn: pure function of a parameter pytree and a batch of inputs.
    params: initial parameters (floating-point leaves).

  Returns:
    A :class:`Model` with empty state.

  Example:
    >>> import jax.numpy as jnp
    >>> model = from_function(lambda p, x: x @ p["w"], {"w": jnp.zeros((3, 1))})
    >>> model.apply(model.params, model.state, jnp.ones((2, 3)), train=True)[0].shape
    (2, 1)
  """
  check_float_params(params)

  def apply(params, state, x, *, train: bool = True):
    del train
    return fn(params, x), state

  return Model(apply, params, {})


def from_nnx(module: Any) -> Model:
  """Splits a Flax NNX module into a pure :class:`Model`.

  Parameters (``nnx.Param``) become ``params``; everything else (BatchNorm
  statistics, RNG counts) becomes ``state``. Both are plain nested dicts.
  ``train=True`` runs BatchNorm on batch statistics and Dropout stochastically
  (``nnx.view(use_running_average=False, deterministic=False)``). When the module's
  ``__call__`` takes a ``mask`` keyword, ``apply`` takes ``mask=`` too and passes it on (a
  ``[n]`` bool mask of real examples, for BatchNorm statistics of padded episodes).

  Args:
    module: an ``nnx.Module`` instance.

  Returns:
    A :class:`Model` whose ``apply`` merges the module inside the function.

  Example:
    >>> from flax import nnx
    >>> model = from_nnx(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    >>> sorted(model.params)
    ['bias', 'kernel']
  """
  from flax import nnx

  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  param_template, rest_template = params, rest
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  check_float_params(params)
  modes = _nnx_mode_flags(module)

  def run(params, state, x, train, call_kwargs):
    merged = nnx.merge(graphdef, _as_state(param_template, params), _as_state(rest_template, state))
    if modes:
      merged = nnx.view(merged, raise_if_not_found=False, **{flag: not train for flag in modes})
    outputs = merged(x, **call_kwargs)
    _, _, new_state = nnx.split(merged, nnx.Param, ...)
    return outputs, nnx.to_pure_dict(new_state)

  if "mask" in inspect.signature(type(module).__call__).parameters:
    # The module computes masked BatchNorm statistics: padded episodes (metajax.core.masks).
    def apply(params, state, x, *, train: bool = True, mask: Array | None = None):
      return run(params, state, x, train, {} if mask is None else {"mask": mask})
  else:
    def apply(params, state, x, *, train: bool = True):
      return run(params, state, x, train, {})

  return Model(apply, params, rest)


# Flags that are True in evaluation mode.
_INVERTED = ("use_running_average", "deterministic")


def _nnx_mode_flags(module: Any) -> tuple[str, ...]:
  """The train/eval attributes that occur in ``module``."""
  from flax import nnx

  found = set()
  for _, node in nnx.iter_graph(module):
    for flag in _INVERTED:
      if hasattr(node, flag):
        found.add(flag)
  return tuple(sorted(found))


def _as_state(template: Any, pure: PyTree) -> Any:
  from flax import nnx

  state = jax.tree.map(lambda x: x, template)
  nnx.replace_by_pure_dict(state, pure)
  return state


def from_linen(
    module: Any,
    example_x: Array,
    key: jax.Array,
    *,
    train_kwarg: str | None = None,
) -> Model:
  """Initialises a Flax Linen module and wraps it as a :class:`Model`.

  Args:
    module: a ``flax.linen.Module``.
    example_x: one batch of inputs used to initialise shapes.
    key: PRNG key for initialisation.
    train_kwarg: name of the module's boolean keyword that selects training
      behaviour (e.g. ``"train"`` for a module calling
      ``nn.BatchNorm(use_running_average=not train)``), or ``None``.

  Returns:
    A :class:`Model`; ``params`` is the ``"params"`` collection and ``state``
    holds every other collection (e.g. ``"batch_stats"``).

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> model = from_linen(nn.Dense(2), jnp.ones((1, 3)), jax.random.key(0))
    >>> model.apply(model.params, model.state, jnp.ones((4, 3)), train=True)[0].shape
    (4, 2)
  """
  kwargs = {train_kwarg: False} if train_kwarg else {}
  variables = dict(module.init(key, example_x, **kwargs))
  params = variables.pop("params", {})
  check_float_params(params)
  mutable = sorted(variables)

  def apply(params, state, x, *, train: bool = True):
    call_kwargs = {train_kwarg: train} if train_kwarg else {}
    if train and mutable:
      outputs, new_state = module.apply({"params": params, **state}, x, mutable=mutable,
                                        **call_kwargs)
      return outputs, dict(new_state)
    return module.apply({"params": params, **state}, x, **call_kwargs), state

  return Model(apply, params, variables)
