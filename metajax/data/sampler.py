"""N-way K-shot episode sampling from a device-resident class-indexed dataset.

Sampling runs in JAX on the accelerator (or the CPU backend) from uint8 images placed there once.
Measured on a 2-core CPU for Omniglot 20-way 5-shot 15-query, batch 32 (``benchmarks/
bench_sampler.py``): device-side sampling gives ~40 task batches/s, a numpy host sampler ~26/s;
the index draw must use ``top_k`` of uniforms (``jax.random.choice(replace=False)`` permutes all
classes and runs at ~10 batches/s). The sampler is a pytree, so ``sample_episodes`` can also be
called inside a jitted meta-step, with no host round-trip at all.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import Task
from metajax.data.dataset import ClassDataset

Augment = Callable[[jax.Array, jax.Array], jax.Array]


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=["images", "index_table", "counts"],
  meta_fields=["ways", "shots", "queries", "batch_size", "image_shape", "augment", "augment_query"],
)
@dataclasses.dataclass(frozen=True)
class EpisodeSampler:
  """Samples batches of N-way K-shot Q-query classification tasks.

  Build it with :func:`episode_sampler`. Episodes depend only on the key (and the dataset): the
  same key gives identical episodes on any machine with the same JAX PRNG settings.

  Attributes:
    images: ``[n_images, H*W*C]`` uint8 on the device.
    index_table: ``[n_classes, max_per_class]`` int32 rows of ``images`` per class (padded).
    counts: ``[n_classes]`` int32 images per class.
    ways, shots, queries, batch_size: the episode shape.
    image_shape: ``(H, W, C)``.
    augment: per-image ``augment(key, image) -> image`` on float32 [0, 1] images, or ``None``.
    augment_query: whether query images are augmented too (support only by default).

  Example:
    >>> import numpy as np
    >>> from metajax.data import from_labels
    >>> data = from_labels(np.zeros((5, 4, 4, 1), np.uint8), [0, 0, 1, 1, 1], ["a", "b"])
    >>> sampler = episode_sampler(data, ways=2, shots=1, queries=1, batch_size=8)
    >>> sampler.counts.tolist(), sampler.index_table.tolist()
    ([2, 3], [[0, 1, 0], [2, 3, 4]])

  References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (episodic training).
  """

  images: jax.Array
  index_table: jax.Array
  counts: jax.Array
  ways: int
  shots: int
  queries: int
  batch_size: int
  image_shape: tuple[int, int, int]
  augment: Augment | None = None
  augment_query: bool = False

  def sample(self, key: jax.Array) -> Task:
    """Returns one task batch for ``key`` (see :func:`sample_episodes`)."""
    return _sample_jit(self, key)

  def sample_at(self, key: jax.Array, first: int) -> Task:
    """Episodes ``first, ..., first + batch_size - 1`` of the stream of ``key``.

    Episode ``i`` depends on ``(key, i)`` alone, whatever the batch size (see
    :func:`sample_episodes_at`): the evaluation protocol, so that validation and test numbers
    do not change with ``eval_batch``.
    """
    return _sample_at_jit(self, key, jnp.asarray(first, jnp.int32))

  def sample_slice(self, key: jax.Array, start: int, stop: int) -> Task:
    """Episodes ``start:stop`` of ``sample(key)``, computed without the others.

    Each process of a multi-process run samples only its share of the batch this way (see
    :func:`sample_episode_slice`).
    """
    return _slice_jit(self, key, int(start), int(stop))

  def iterate(
    self, key: jax.Array, *, num_batches: int | None = None, start: int = 0
  ) -> Iterator[Task]:
    """Yields task batches ``sample(fold_in(key, step))`` for ``step = start, start+1, ...``.

    The next batch is dispatched before the current one is yielded, so (with JAX's asynchronous
    dispatch) it is computed while the caller trains on the current one.

    Args:
      key: the base PRNG key.
      num_batches: how many batches; ``None`` for an endless stream.
      start: the first step, to resume a run at the same episodes.

    Yields:
      :class:`~metajax.core.types.Task` batches.
    """
    return iterate_batches(self.sample, key, num_batches=num_batches, start=start)


def iterate_batches(sample: Callable[[jax.Array], Task], key: jax.Array, *,
                    num_batches: int | None = None, start: int = 0) -> Iterator[Task]:
  """Yields ``sample(fold_in(key, step))`` for ``step = start, start + 1, ...``.

  The next batch is dispatched before the current one is yielded, so (with JAX's asynchronous
  dispatch) it is computed while the caller trains on the current one. Every sampler's
  ``iterate`` is this function over its own ``sample``.
  """
  stop = None if num_batches is None else start + num_batches
  step = start
  if stop is not None and step >= stop:
    return
  upcoming = sample(jax.random.fold_in(key, step))
  while True:
    current = upcoming
    step += 1
    if stop is None or step < stop:
      upcoming = sample(jax.random.fold_in(key, step))
      yield current
    else:
      yield current
      return


def flat_images_and_index_table(dataset: ClassDataset, counts: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
  """``(flat [n_images, pixels], table [classes, max_count])``: row ``table[c, i]`` of ``flat``
  is image ``i`` of class ``c`` (rows past a class's count are 0 and never drawn)."""
  if dataset.is_dense:
    n_classes, per_class = dataset.images.shape[:2]
    flat = dataset.images.reshape(n_classes * per_class, -1)
    table = np.arange(n_classes * per_class, dtype=np.int32).reshape(n_classes, per_class)
  else:
    flat = dataset.images.reshape(len(dataset.images), -1)
    table = np.zeros((dataset.num_classes, int(counts.max())), np.int32)
    for c, rows in enumerate(dataset.class_indices):
      table[c, : len(rows)] = rows
  return flat, table


def episode_sampler(
  dataset: ClassDataset,
  *,
  ways: int,
  shots: int,
  queries: int,
  batch_size: int,
  augment: Augment | None = None,
  augment_query: bool = False,
  device: jax.Device | None = None,
) -> EpisodeSampler:
  """Places ``dataset`` on the device and returns a sampler of N-way K-shot episodes.

  Each episode draws ``ways`` distinct classes, then ``shots + queries`` distinct images of each;
  the first ``shots`` go to the support set and the rest to the query set, so the two are
  disjoint. Labels are the class positions ``0..ways-1`` in random class order; examples are
  class-major (``support_y = [0]*shots + [1]*shots + ...``). Build one sampler per split; ways
  and shots at test time may differ from training.

  Args:
    dataset: the classes of one split.
    ways: classes per episode (N).
    shots: support images per class (K).
    queries: query images per class (Q).
    batch_size: episodes per batch (B).
    augment: optional per-image ``augment(key, image) -> image``, e.g.
      ``compose(random_crop(padding=8), random_flip)`` from ``metajax.data.augment``.
    augment_query: also augment the query images.
    device: where to keep the images; the default device when ``None``.

  Returns:
    An :class:`EpisodeSampler`; ``sample(key)`` gives a :class:`~metajax.core.types.Task` with
    ``support_x [B, N*K, H, W, C]`` float32 in [0, 1], ``support_y [B, N*K]`` int32 in
    ``[0, N)``, and ``query_x [B, N*Q, H, W, C]``, ``query_y [B, N*Q]`` likewise.

  Raises:
    ValueError: when ways exceeds the classes of the split, or shots + queries exceeds the
      images of some class.

  Example:
    >>> from metajax.data import load_omniglot  # doctest: +SKIP
    >>> sampler = episode_sampler(load_omniglot("train"), ways=20, shots=5, queries=15,
    ...                           batch_size=32)  # doctest: +SKIP
    >>> sampler.sample(jax.random.key(0)).support_x.shape  # doctest: +SKIP
    (32, 100, 28, 28, 1)

  References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (episodic training).
  """
  name = f"'{dataset.name}'" if dataset.name else "(unnamed)"
  for arg, value in (("ways", ways), ("shots", shots), ("batch_size", batch_size)):
    if int(value) < 1:
      raise ValueError(f"{arg}={value} must be at least 1")
  if queries < 0:
    raise ValueError(f"queries={queries} must be at least 0")
  if ways < 2:
    raise ValueError(f"ways={ways} must be at least 2: a 1-way episode is not a classification "
                     "task (its loss is 0 whatever the model); sample ways >= 2")
  if ways > dataset.num_classes:
    raise ValueError(
      f"ways={ways} but the split {name} has only {dataset.num_classes} classes; lower ways or "
      "use another split"
    )
  counts = np.asarray(dataset.examples_per_class, np.int64)
  smallest = int(np.argmin(counts))
  if shots + queries > counts[smallest]:
    raise ValueError(
      f"shots + queries = {shots} + {queries} = {shots + queries} but class "
      f"'{dataset.class_names[smallest]}' of the split {name} has only {counts[smallest]} "
      "images; lower shots or queries (every class must have shots + queries images)"
    )
  flat, table = flat_images_and_index_table(dataset, counts)
  put = functools.partial(jax.device_put, device=device)
  return EpisodeSampler(
    images=put(np.ascontiguousarray(flat, np.uint8)),
    index_table=put(table),
    counts=put(counts.astype(np.int32)),
    ways=int(ways),
    shots=int(shots),
    queries=int(queries),
    batch_size=int(batch_size),
    image_shape=tuple(int(d) for d in dataset.image_shape),
    augment=augment,
    augment_query=bool(augment_query),
  )


def _episode_rows(sampler: EpisodeSampler, key: jax.Array) -> jax.Array:
  """Returns ``[ways, shots + queries]`` image rows for one episode."""
  class_key, image_key = jax.random.split(key)
  n_classes, max_per_class = sampler.index_table.shape
  # top_k of i.i.d. uniforms is a uniform draw without replacement, and O(n_classes).
  _, classes = jax.lax.top_k(jax.random.uniform(class_key, (n_classes,)), sampler.ways)
  scores = jax.random.uniform(image_key, (sampler.ways, max_per_class))
  valid = jnp.arange(max_per_class)[None, :] < sampler.counts[classes][:, None]
  scores = jnp.where(valid, scores, 2.0)  # padding sorts last, never drawn
  order = jnp.argsort(scores, axis=-1)[:, : sampler.shots + sampler.queries]
  return jnp.take_along_axis(sampler.index_table[classes], order, axis=-1)


def sample_episodes(sampler: EpisodeSampler, key: jax.Array) -> Task:
  """Samples ``sampler.batch_size`` episodes; a pure function, usable inside ``jax.jit``.

  Args:
    sampler: from :func:`episode_sampler` (a pytree: pass it as a jit argument).
    key: a PRNG key; episode ``b`` uses ``jax.random.split(key, batch_size)[b]``.

  Returns:
    A task batch, shapes as in :func:`episode_sampler`.

  Example:
    Three classes of two one-pixel images each (pixel value = image number): the support and
    query images of an episode's class are always different images.

    >>> import numpy as np, jax
    >>> from metajax.data import episode_sampler, from_labels
    >>> images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)
    >>> data = from_labels(images, [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    >>> sampler = episode_sampler(data, ways=2, shots=1, queries=1, batch_size=4)
    >>> tasks = jax.jit(sample_episodes)(sampler, jax.random.key(0))
    >>> tasks.support_x.shape, tasks.support_y[0].tolist()
    ((4, 2, 1, 1, 1), [0, 1])
    >>> bool((tasks.support_x != tasks.query_x).all())
    True
  """
  return sample_episode_slice(sampler, key, 0, sampler.batch_size)


def sample_episode_slice(sampler: EpisodeSampler, key: jax.Array, start: int, stop: int
                         ) -> Task:
  """Episodes ``start:stop`` of :func:`sample_episodes` ``(sampler, key)``, and only those.

  Every random draw of episode ``b`` comes from keys indexed by ``b`` (its episode key, its
  images' augmentation keys), so a slice equals the same rows of the whole batch. A process of a
  multi-process run samples its share of the global batch this way, and the global batch is the
  same whatever the number of processes.

  Args:
    sampler: from :func:`episode_sampler`.
    key: the batch's PRNG key.
    start, stop: the episode range, ``0 <= start < stop <= batch_size`` (static under jit).

  Returns:
    A task batch of ``stop - start`` episodes.
  """
  ways, shots, queries, size = sampler.ways, sampler.shots, sampler.queries, sampler.batch_size
  if not 0 <= start < stop <= size:
    raise ValueError(f"episode slice {start}:{stop} is not within the batch of {size}; use "
                     f"0 <= start < stop <= {size}")
  batch = stop - start
  episode_keys = jax.random.split(key, size)[start:stop]
  rows = jax.vmap(functools.partial(_episode_rows, sampler))(episode_keys)  # [B, N, K+Q]
  pixels = jnp.take(sampler.images, rows.reshape(-1), axis=0)
  x = pixels.reshape(batch, ways, shots + queries, *sampler.image_shape)
  x = x.astype(jnp.float32) * (1.0 / 255.0)
  support_x = x[:, :, :shots].reshape(batch, ways * shots, *sampler.image_shape)
  query_x = x[:, :, shots:].reshape(batch, ways * queries, *sampler.image_shape)
  if sampler.augment is not None:
    aug_key = jax.random.fold_in(key, 1)
    support_x = _augment_all(sampler.augment, jax.random.fold_in(aug_key, 0), support_x,
                             start, size)
    if sampler.augment_query and queries:
      query_x = _augment_all(sampler.augment, jax.random.fold_in(aug_key, 1), query_x,
                             start, size)
  labels = jnp.arange(ways, dtype=jnp.int32)
  support_y = jnp.broadcast_to(jnp.repeat(labels, shots), (batch, ways * shots))
  query_y = jnp.broadcast_to(jnp.repeat(labels, queries), (batch, ways * queries))
  return Task(support_x, support_y, query_x, query_y)


def sample_episodes_at(sampler: EpisodeSampler, key: jax.Array, first: jax.Array | int) -> Task:
  """Samples episodes ``first + b`` for ``b < batch_size``; episode ``i`` from ``fold_in(key, i)``.

  Unlike :func:`sample_episodes` (whose episode ``b`` is ``split(key, batch_size)[b]``), an
  episode here is a function of the key and its index only, so the first 600 episodes are the
  same whether they are drawn 1, 7, 50 or 600 at a time. A pure function, usable inside jit.

  Args:
    sampler: from :func:`episode_sampler`.
    key: the base key of the episode stream.
    first: the index of the batch's first episode.

  Returns:
    A task batch of ``sampler.batch_size`` episodes, shapes as in :func:`episode_sampler`.
  """
  one = dataclasses.replace(sampler, batch_size=1)
  indices = jnp.asarray(first, jnp.int32) + jnp.arange(sampler.batch_size, dtype=jnp.int32)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
  episodes = jax.vmap(lambda k: sample_episodes(one, k))(keys)
  return jax.tree.map(lambda x: x.reshape(x.shape[:1] + x.shape[2:]), episodes)


def _augment_all(augment: Augment, key: jax.Array, images: jax.Array, start: int = 0,
                 size: int | None = None) -> jax.Array:
  """Applies a per-image augmentation to ``[B, n, H, W, C]`` images with independent keys.

  The images are episodes ``start:start+B`` of a batch of ``size``; image ``j`` of episode ``b``
  takes key ``b * n + j`` of ``split(key, size * n)``.
  """
  batch, n = images.shape[:2]
  size = batch if size is None else size
  flat = images.reshape(batch * n, *images.shape[2:])
  flat_keys = jax.random.split(key, size * n)[start * n:(start + batch) * n]
  return jax.vmap(augment)(flat_keys, flat).reshape(images.shape)


_sample_jit = jax.jit(sample_episodes)
_sample_at_jit = jax.jit(sample_episodes_at)
_slice_jit = jax.jit(sample_episode_slice, static_argnums=(2, 3))
