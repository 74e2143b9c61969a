"""Minibatches of labelled images over all classes of a split, for supervised pretraining.

Transfer baselines (Chen et al. 2019, Tian et al. 2020) first train an embedding with plain
cross-entropy over every base class. :func:`batch_sampler` draws such minibatches on the device,
as :func:`metajax.data.episode_sampler` draws episodes, and hands them out as
:class:`~metajax.core.types.Task` batches so the compiled meta-step trains
:func:`metajax.algorithms.transfer.pretrain` unchanged. A minibatch is class-balanced: ``classes``
distinct classes drawn uniformly, ``shots + queries`` distinct images of each (split into
``support`` and ``query`` as in an episode, both used by the pretraining loss), labelled by their
**global** class ``0..C-1``, not by their position in the batch. Minibatch ``s`` comes from
``fold_in(key, s)`` only, so a resumed run sees the same minibatches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import Task
from metajax.data.dataset import ClassDataset
from metajax.data.sampler import Augment, flat_images_and_index_table, iterate_batches


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=["images", "index_table", "counts"],
  meta_fields=["classes", "shots", "queries", "batch_size", "image_shape", "augment"],
)
@dataclasses.dataclass(frozen=True)
class BatchSampler:
  """Samples batches of class-balanced, globally labelled minibatches; see :func:`batch_sampler`.

  Attributes:
    images: ``[n_images, H*W*C]`` uint8 on the device.
    index_table: ``[n_classes, max_per_class]`` int32 rows of ``images`` per class (padded).
    counts: ``[n_classes]`` int32 images per class.
    classes: classes per minibatch.
    shots, queries: images per class in the support and the query part.
    batch_size: minibatches ("tasks") per batch, the task axis.
    image_shape: ``(H, W, C)``.
    augment: per-image ``augment(key, image) -> image`` on float32 [0, 1] images, or ``None``.

  Example:
    >>> import numpy as np
    >>> from metajax.data import from_labels
    >>> data = from_labels(np.zeros((5, 4, 4, 1), np.uint8), [0, 0, 1, 1, 1], ["a", "b"])
    >>> sampler = batch_sampler(data, classes=2, shots=1, queries=1, batch_size=3)
    >>> sampler.counts.tolist(), sampler.index_table.shape, sampler.image_shape
    ([2, 3], (2, 3), (4, 4, 1))

  References:
    Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019; Tian,
    Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification: a Good
    Embedding Is All You Need?", ECCV 2020 (pretraining on all base classes).
  """

  images: jax.Array
  index_table: jax.Array
  counts: jax.Array
  classes: int
  shots: int
  queries: int
  batch_size: int
  image_shape: tuple[int, int, int]
  augment: Augment | None = None

  def sample(self, key: jax.Array) -> Task:
    """One batch for ``key`` (see :func:`sample_batch`)."""
    return _slice_jit(self, key, 0, self.batch_size)

  def sample_slice(self, key: jax.Array, start: int, stop: int) -> Task:
    """Minibatches ``start:stop`` of ``sample(key)``, computed without the others."""
    return _slice_jit(self, key, int(start), int(stop))

  def iterate(
    self, key: jax.Array, *, num_batches: int | None = None, start: int = 0
  ) -> Iterator[Task]:
    """Yields ``sample(fold_in(key, step))`` for ``step = start, start + 1, ...``.

    Args:
      key: the base PRNG key.
      num_batches: how many; ``None`` for an endless stream.
      start: the first step, to resume a run with the same minibatches.
    """
    return iterate_batches(self.sample, key, num_batches=num_batches, start=start)


def batch_sampler(
  dataset: ClassDataset,
  *,
  classes: int,
  shots: int,
  queries: int = 0,
  batch_size: int = 1,
  augment: Augment | None = None,
  device: jax.Device | None = None,
) -> BatchSampler:
  """Places ``dataset`` on the device and returns a sampler of labelled minibatches.

  Args:
    dataset: the base classes.
    classes: distinct classes per minibatch.
    shots: images per class in the support part.
    queries: images per class in the query part.
    batch_size: minibatches per batch (the task axis; each is one "task" of the meta-step, with
      its own BatchNorm statistics).
    augment: optional per-image augmentation (see ``metajax.data.augment``).
    device: where to keep the images; the default device when ``None``.

  Returns:
    A :class:`BatchSampler`; ``sample(key)`` gives a :class:`~metajax.core.types.Task` with
    ``support_x [batch_size, classes * shots, H, W, C]`` float32 in [0, 1], ``support_y`` their
    global class labels in ``[0, dataset.num_classes)``, and the query part likewise.

  Raises:
    ValueError: when ``classes`` exceeds the classes of the split or ``shots + queries`` the
      images of some class.

  Example:
    >>> import numpy as np, jax
    >>> from metajax.data import from_labels
    >>> data = from_labels(np.zeros((6, 4, 4, 1), np.uint8), [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    >>> batch = batch_sampler(data, classes=3, shots=2, batch_size=4).sample(jax.random.key(0))
    >>> batch.support_x.shape, batch.support_y.shape, batch.query_x.shape
    ((4, 6, 4, 4, 1), (4, 6), (4, 0, 4, 4, 1))
  """
  for name, value in (("classes", classes), ("shots", shots), ("batch_size", batch_size)):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}.")
  if isinstance(queries, bool) or not isinstance(queries, int | np.integer) or queries < 0:
    raise ValueError(f"queries must be an int >= 0, got {queries!r}.")
  if classes > dataset.num_classes:
    raise ValueError(f"classes={classes} but the split {dataset.name!r} has only "
                     f"{dataset.num_classes} classes; lower classes")
  counts = np.asarray(dataset.examples_per_class, np.int64)
  if shots + queries > counts.min():
    raise ValueError(f"shots + queries = {shots + queries} but a class of {dataset.name!r} has "
                     f"only {counts.min()} images; lower shots or queries")
  flat, table = flat_images_and_index_table(dataset, counts)
  put = functools.partial(jax.device_put, device=device)
  return BatchSampler(
    images=put(np.ascontiguousarray(flat, np.uint8)),
    index_table=put(table),
    counts=put(counts.astype(np.int32)),
    classes=int(classes),
    shots=int(shots),
    queries=int(queries),
    batch_size=int(batch_size),
    image_shape=tuple(int(d) for d in dataset.image_shape),
    augment=augment,
  )


def _minibatch(sampler: BatchSampler, key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``[classes, shots + queries]`` image rows and ``[classes]`` global labels of a minibatch."""
  class_key, image_key = jax.random.split(key)
  n_classes, max_per_class = sampler.index_table.shape
  # top_k of i.i.d. uniforms is a uniform draw without replacement.
  _, labels = jax.lax.top_k(jax.random.uniform(class_key, (n_classes,)), sampler.classes)
  scores = jax.random.uniform(image_key, (sampler.classes, max_per_class))
  valid = jnp.arange(max_per_class)[None, :] < sampler.counts[labels][:, None]
  order = jnp.argsort(jnp.where(valid, scores, 2.0), axis=-1)[:, : sampler.shots + sampler.queries]
  return jnp.take_along_axis(sampler.index_table[labels], order, axis=-1), labels.astype(jnp.int32)


def sample_batch(sampler: BatchSampler, key: jax.Array, start: int = 0, stop: int | None = None
                 ) -> Task:
  """Minibatches ``start:stop`` (default: all) of the batch for ``key``; pure, usable under jit.

  Minibatch ``b`` depends only on ``jax.random.split(key, batch_size)[b]``.

  Args:
    sampler: from :func:`batch_sampler`.
    key: a PRNG key.
    start, stop: the range of minibatches (static).

  Returns:
    A task batch, shapes as in :func:`batch_sampler`.
  """
  size = sampler.batch_size
  stop = size if stop is None else stop
  if not 0 <= start < stop <= size:
    raise ValueError(f"minibatch slice {start}:{stop} is not within the batch of {size}")
  keys = jax.random.split(key, size)[start:stop]
  rows, labels = jax.vmap(functools.partial(_minibatch, sampler))(keys)
  count, per_class = stop - start, sampler.shots + sampler.queries
  x = jnp.take(sampler.images, rows.reshape(-1), axis=0).astype(jnp.float32) * (1.0 / 255.0)
  x = x.reshape(count * sampler.classes * per_class, *sampler.image_shape)
  if sampler.augment is not None:
    image_keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 1),
                                                     sampler.classes * per_class))(keys)
    x = jax.vmap(sampler.augment)(image_keys.reshape(-1), x)
  x = x.reshape(count, sampler.classes, per_class, *sampler.image_shape)
  y = jnp.broadcast_to(labels[:, :, None], (count, sampler.classes, per_class))
  split = lambda a, lo, hi: a[:, :, lo:hi].reshape(count, -1, *a.shape[3:])
  shots = sampler.shots
  return Task(split(x, 0, shots), split(y, 0, shots), split(x, shots, per_class),
              split(y, shots, per_class))


_slice_jit = jax.jit(sample_batch, static_argnums=(2, 3))
