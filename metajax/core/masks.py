"""Masked (padded) episodes: helpers shared by every learner that accepts them.

Meta-Dataset episodes differ in ways and shots from one episode to the next. Ragged shapes would
recompile the meta-step for every episode, so such episodes are padded to static maxima and carry
boolean masks (:class:`metajax.Task` ``support_mask`` / ``query_mask``). A learner that supports
masks must give exactly the loss, accuracy and meta-gradient of the unpadded episode; that is
tested for every learner in ``tests/test_meta_dataset.py``.

Where padding can leak in, and what stops it:

* means over examples (losses, accuracy, class statistics) weight each example by its mask;
* BatchNorm in training mode ("transductive") normalises by batch statistics, which padding
  would shift. Models without state (no BatchNorm) treat examples independently, so padding
  cannot reach the real rows. Models with state must take ``mask=`` in ``apply`` (Conv-4 and
  ResNet-12 from :mod:`metajax.models` do: their BatchNorm layers compute masked statistics);
  any other stateful model in transductive mode is refused by ``check_task`` with an error.
  ``batch_norm="frozen"`` uses stored statistics and needs no mask.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.learner import Model
from metajax.core.types import Array, PyTree, Task


def masked_mean(values: Array, mask: Array | None) -> Array:
  """Mean of ``values [n]`` over the entries where ``mask`` is True (all when None)."""
  if mask is None:
    return jnp.mean(values)
  weights = mask.astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def accepts_mask(model: Model) -> bool:
  """Whether ``model.apply`` takes a ``mask=`` keyword (for masked BatchNorm statistics)."""
  try:
    return "mask" in inspect.signature(model.apply).parameters
  except (TypeError, ValueError):
    return False


def padding_is_invisible(model: Model, train: bool) -> bool:
  """Whether padded examples cannot change the model's outputs on the real examples.

  True when BatchNorm uses stored statistics (``train=False``), when the model has no state
  (each example is processed on its own), or when ``apply`` takes a ``mask``.
  """
  return (not train) or not jax.tree.leaves(model.state) or accepts_mask(model)


def apply_model(model: Model, params: PyTree, x: Array, *, train: bool,
                mask: Array | None = None, state: PyTree | None = None) -> Array:
  """``model.apply(params, state, x, train=train)[0]``, passing ``mask`` where it matters."""
  state = model.state if state is None else state
  if mask is not None and train and jax.tree.leaves(state) and accepts_mask(model):
    return model.apply(params, state, x, train=train, mask=mask)[0]
  return model.apply(params, state, x, train=train)[0]


def check_masks(tasks: Task, *, supported: bool, name: str, reason: str = "") -> None:
  """Raises when a masked task reaches a learner that cannot ignore its padding.

  Args:
    tasks: a task or task batch.
    supported: whether the learner handles masks.
    name: the learner's name, for the message.
    reason: why it does not (appended to the message).
  """
  if not tasks.is_masked:
    return
  if not supported:
    why = f" ({reason})" if reason else ""
    raise ValueError(
        f"{name} does not support masked (padded) episodes{why}: its padding would silently "
        "change the loss. Use unpadded fixed-shape episodes (e.g. metajax.data.episode_sampler), "
        "or a learner with supports_masks=True (e.g. protonet, maml)."
    )
  for field, x_field in (("support_mask", "support_x"), ("query_mask", "query_x")):
    mask = getattr(tasks, field)
    if mask is None:
      continue
    if not jnp.issubdtype(jnp.result_type(mask), jnp.bool_):
      raise TypeError(f"{field} must be a boolean array (True = real example), got dtype "
                      f"{jnp.result_type(mask)}; pass mask.astype(bool).")
    expected = np.shape(getattr(tasks, x_field))[: np.ndim(mask)]
    if np.shape(mask) != expected:
      raise ValueError(f"{field} must have one entry per example, shape {expected}, got "
                       f"{np.shape(mask)}; build it with the padded {x_field}.")
    if not isinstance(mask, jax.core.Tracer):
      counts = np.asarray(mask).reshape(-1, np.shape(mask)[-1]).sum(axis=-1)
      if counts.size and counts.min() == 0:
        raise ValueError(f"{field} of some task has no True entry; every episode needs at least "
                         "one real support and one real query example.")


def with_masks(task: Task) -> tuple[Array, Array, Array, Array, Array, Array]:
  """The four data fields and both masks, all-True masks filled in where missing."""
  support_mask = task.support_mask
  if support_mask is None:
    support_mask = jnp.ones(jnp.shape(task.support_y)[:1], bool)
  query_mask = task.query_mask
  if query_mask is None:
    query_mask = jnp.ones(jnp.shape(task.query_y)[:1], bool)
  return (*task[:4], support_mask, query_mask)


def pad_task(task: Task, n_support: int, n_query: int, *, key: jax.Array | None = None) -> Task:
  """Pads one (unbatched) task to ``n_support`` / ``n_query`` examples and adds masks.

  Padding examples are random inputs with random labels of the same dtype (``key``), or zeros
  when ``key`` is None; a learner that supports masks must ignore them either way.

  Args:
    task: one task, without a task axis.
    n_support: padded support size, at least the task's.
    n_query: padded query size, at least the task's.
    key: PRNG key for the padding values.

  Returns:
    The padded :class:`Task` with ``support_mask`` / ``query_mask`` set.

  Example:
    >>> import jax.numpy as jnp
    >>> t = Task(jnp.ones((2, 3)), jnp.array([0, 1]), jnp.ones((2, 3)), jnp.array([1, 0]))
    >>> padded = pad_task(t, 4, 3)
    >>> padded.support_x.shape, padded.support_mask.tolist()
    ((4, 3), [True, True, False, False])
  """
  keys = [None] * 4 if key is None else list(jax.random.split(key, 4))

  def pad(x, n, k, labels):
    extra = n - x.shape[0]
    if extra < 0:
      raise ValueError(f"cannot pad {x.shape[0]} examples to {n}; pass a size >= {x.shape[0]}.")
    shape = (extra, *x.shape[1:])
    if k is None:
      fill = jnp.zeros(shape, x.dtype)
    elif jnp.issubdtype(x.dtype, jnp.integer):
      fill = jax.random.randint(k, shape, 0, max(int(jnp.max(labels)) + 1, 1)).astype(x.dtype)
    else:
      fill = (jax.random.normal(k, shape) * 3.0).astype(x.dtype)
    return jnp.concatenate([x, fill])

  sx, sy, qx, qy, smask, qmask = with_masks(task)
  n_s, n_q = sx.shape[0], qx.shape[0]
  return Task(pad(sx, n_support, keys[0], sy), pad(sy, n_support, keys[1], sy),
              pad(qx, n_query, keys[2], qy), pad(qy, n_query, keys[3], qy),
              jnp.concatenate([smask, jnp.zeros(n_support - n_s, bool)]),
              jnp.concatenate([qmask, jnp.zeros(n_query - n_q, bool)]))
