"""Meta-Dataset episodes: variable ways and shots, padded to static maxima with masks.

The sampling procedure of Triantafillou et al. (ICLR 2020, Section 3.2 and Appendix; the
formulas of ``meta_dataset/data/sampling.py`` in their release), for one source with class
sizes ``n_c``:

1. ways ``N ~ U{min_ways, ..., min(max_ways, classes)}`` (5 and 50), classes uniformly without
   replacement;
2. queries per class ``q = min(max_query, min_c floor(n_c / 2))`` over the chosen classes (10);
3. support size ``S = min(max_support, sum_c floor(beta * min(max_contrib, n_c - q) + 1))`` with
   ``beta ~ U[0, 1)`` (500 and 100; ``floor(beta x + 1)`` is ``ceil`` of ``beta in (0, 1]``);
4. shots per class ``k_c = min(floor(p_c (S - N)) + 1, n_c - q)`` with imbalanced proportions
   ``p_c ∝ n_c exp(a_c)``, ``a_c ~ U[log 0.5, log 2)``: every class gets at least one shot.

An episode holds at most ``max_support`` support and ``min(max_ways, classes) * max_query``
query examples; the sampler always returns those static shapes and marks the real examples in
``Task.support_mask`` / ``query_mask``, so a meta-step compiles once for every episode (learners
with ``supports_masks`` ignore the padding exactly; see :mod:`metajax.core.masks`). Support
examples are class-major (all of class 0, then class 1, ...) and padding follows them.

Everything is a pure function of a PRNG key and the class sizes (:func:`describe_episode`), so
the same key gives the same episode from the in-memory sampler here and from the streaming
backend (:mod:`metajax.data.streaming`), which reads only the rows an episode needs.

Many sources. :class:`MultiSourceSampler` draws each batch from one source picked with fixed
probabilities (the protocol's "episodes from one source at a time"); all sources must share an
image shape (resize them to one, as Meta-Dataset does at 84x84) and get the same static maxima,
so batches from every source share one compiled step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import Task
from metajax.data.dataset import ClassDataset
from metajax.data.sampler import iterate_batches


class Protocol(NamedTuple):
  """The constants of the Meta-Dataset episode distribution (the paper's defaults).

  Attributes:
    min_ways: fewest classes per episode (5).
    max_ways: most classes per episode (50), capped by the split's classes.
    max_query: most queries per class (10).
    max_support: most support examples per episode (500).
    max_contrib: most support-size contribution of one class (100).
    min_log_weight: low end of the class-weight log-uniform draw (``log 0.5``).
    max_log_weight: high end (``log 2``).

  Example:
    >>> Protocol().max_ways, Protocol(max_ways=20).max_ways
    (50, 20)

  References:
    Triantafillou et al., "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
    Examples", ICLR 2020, Section 3.2 and Appendix.
  """

  min_ways: int = 5
  max_ways: int = 50
  max_query: int = 10
  max_support: int = 500
  max_contrib: int = 100
  min_log_weight: float = math.log(0.5)
  max_log_weight: float = math.log(2.0)


META_DATASET = Protocol()


class EpisodeDescription(NamedTuple):
  """The composition of one padded episode (all arrays; a pytree).

  Attributes:
    classes: ``[W]`` class indices; the first ``ways`` are the episode's, in label order.
    ways: number of classes ``N``.
    shots: ``[W]`` support examples per class (0 beyond ``ways``).
    queries: query examples per class ``q`` (the same for every class).
    order: ``[W, max_per_class]`` a random permutation of each class's examples; the first
      ``shots[c]`` go to the support set, the next ``queries`` to the query set.
  """

  classes: jax.Array
  ways: jax.Array
  shots: jax.Array
  queries: jax.Array
  order: jax.Array


def static_ways(num_classes: int, protocol: Protocol = META_DATASET) -> int:
  """The padded class width ``W = min(max_ways, classes)``."""
  return min(protocol.max_ways, num_classes)


def describe_episode(key: jax.Array, counts: jax.Array, protocol: Protocol = META_DATASET,
                     *, max_per_class: int | None = None) -> EpisodeDescription:
  """Samples the composition of one episode; pure, jit- and vmap-friendly.

  Args:
    key: PRNG key.
    counts: ``[n_classes]`` int images per class of the split.
    protocol: the constants (:data:`META_DATASET`).
    max_per_class: width of ``order`` (default ``max(counts)``; must be static under jit).

  Returns:
    An :class:`EpisodeDescription`.
  """
  counts = jnp.asarray(counts, jnp.int32)
  n_classes = counts.shape[0]
  width = static_ways(n_classes, protocol)
  if max_per_class is None:
    max_per_class = int(np.max(np.asarray(counts)))
  k_ways, k_classes, k_beta, k_weights, k_order = jax.random.split(key, 5)
  ways = jax.random.randint(k_ways, (), protocol.min_ways, width + 1)
  # top_k of i.i.d. uniforms: the first `ways` are a uniform draw without replacement.
  _, classes = jax.lax.top_k(jax.random.uniform(k_classes, (n_classes,)), width)
  in_episode = jnp.arange(width) < ways
  sizes = counts[classes]
  big = jnp.iinfo(jnp.int32).max
  queries = jnp.minimum(protocol.max_query, jnp.min(jnp.where(in_episode, sizes // 2, big)))
  remaining = sizes - queries
  beta = jax.random.uniform(k_beta)
  contributions = jnp.minimum(protocol.max_contrib, remaining).astype(jnp.float32)
  support_size = jnp.minimum(
      jnp.sum(jnp.where(in_episode, jnp.floor(beta * contributions + 1.0), 0.0)),
      protocol.max_support)
  log_weights = jax.random.uniform(k_weights, (width,), minval=protocol.min_log_weight,
                                   maxval=protocol.max_log_weight)
  weights = jnp.where(in_episode, sizes * jnp.exp(log_weights), 0.0)
  proportions = weights / jnp.sum(weights)
  desired = jnp.floor(proportions * (support_size - ways)).astype(jnp.int32) + 1
  shots = jnp.where(in_episode, jnp.minimum(desired, remaining), 0)
  scores = jax.random.uniform(k_order, (width, max_per_class))
  scores = jnp.where(jnp.arange(max_per_class)[None, :] < sizes[:, None], scores, 2.0)
  order = jnp.argsort(scores, axis=-1).astype(jnp.int32)
  return EpisodeDescription(classes.astype(jnp.int32), ways, shots.astype(jnp.int32),
                            queries.astype(jnp.int32), order)


class EpisodeRows(NamedTuple):
  """Dataset rows of one padded episode (padding points at row 0 and is masked out)."""

  support_rows: jax.Array
  support_y: jax.Array
  support_mask: jax.Array
  query_rows: jax.Array
  query_y: jax.Array
  query_mask: jax.Array


def episode_rows(description: EpisodeDescription, index_table: jax.Array,
                 protocol: Protocol = META_DATASET) -> EpisodeRows:
  """Lays an episode out in static ``[max_support]`` / ``[W * max_query]`` slots.

  Args:
    description: from :func:`describe_episode`.
    index_table: ``[n_classes, max_per_class]`` dataset rows of each class.
    protocol: the constants.

  Returns:
    :class:`EpisodeRows`; labels are class positions ``0..ways-1``.
  """
  width = description.classes.shape[0]
  per_class = index_table[description.classes]  # [W, max_per_class]
  ends = jnp.cumsum(description.shots)
  starts = ends - description.shots
  slot = jnp.arange(protocol.max_support)
  support_class = jnp.minimum(jnp.searchsorted(ends, slot, side="right"), width - 1)
  support_mask = slot < ends[-1]
  position = jnp.where(support_mask, slot - starts[support_class], 0)
  support_rows = per_class[support_class, description.order[support_class, position]]
  q = jnp.maximum(description.queries, 1)
  slot = jnp.arange(width * protocol.max_query)
  query_class = jnp.minimum(slot // q, width - 1)
  query_mask = slot < description.ways * description.queries
  position = jnp.where(query_mask, description.shots[query_class] + slot % q, 0)
  query_rows = per_class[query_class, description.order[query_class, position]]
  zero = jnp.zeros((), jnp.int32)
  return EpisodeRows(jnp.where(support_mask, support_rows, zero),
                     jnp.where(support_mask, support_class, zero).astype(jnp.int32), support_mask,
                     jnp.where(query_mask, query_rows, zero),
                     jnp.where(query_mask, query_class, zero).astype(jnp.int32), query_mask)


def class_index_table(dataset: ClassDataset) -> tuple[np.ndarray, np.ndarray]:
  """``(index_table [n_classes, max_per_class] int32, counts [n_classes] int32)``: the rows of
  each class in the flat ``[n_images, ...]`` image array (dense or indexed layout)."""
  counts = np.asarray(dataset.examples_per_class, np.int32)
  if dataset.is_dense:
    n_classes, per_class = dataset.images.shape[:2]
    return np.arange(n_classes * per_class, dtype=np.int32).reshape(n_classes, per_class), counts
  table = np.zeros((dataset.num_classes, int(counts.max())), np.int32)
  for c, rows in enumerate(dataset.class_indices):
    table[c, : len(rows)] = rows
  return table, counts


def batch_rows(key: jax.Array, index_table: jax.Array, counts: jax.Array, batch_size: int,
               protocol: Protocol = META_DATASET) -> EpisodeRows:
  """Rows of ``batch_size`` episodes: episode ``b`` uses ``jax.random.split(key, B)[b]``."""
  describe = functools.partial(describe_episode, counts=counts, protocol=protocol,
                               max_per_class=index_table.shape[1])
  descriptions = jax.vmap(describe)(jax.random.split(key, batch_size))
  return jax.vmap(lambda d: episode_rows(d, index_table, protocol))(descriptions)


def _check_source(dataset: ClassDataset, protocol: Protocol) -> None:
  name = f"'{dataset.name}'" if dataset.name else "(unnamed)"
  if dataset.num_classes < protocol.min_ways:
    raise ValueError(
        f"the split {name} has {dataset.num_classes} classes but Meta-Dataset episodes need at "
        f"least min_ways={protocol.min_ways}; use a larger split or lower min_ways.")
  smallest = min(dataset.examples_per_class)
  if smallest < 2:
    raise ValueError(
        f"a class of the split {name} has {smallest} image; the protocol needs at least 2 per "
        "class (one support, one query); drop such classes first.")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["images", "index_table", "counts"],
    meta_fields=["batch_size", "image_shape", "protocol"],
)
@dataclasses.dataclass(frozen=True)
class MetaDatasetSampler:
  """Samples batches of Meta-Dataset episodes from one source held on the device.

  Build it with :func:`meta_dataset_sampler`; the episode shapes depend only on the number of
  classes (``W = min(50, classes)``) and the protocol, never on the key.

  Attributes:
    images: ``[n_images, H*W*C]`` uint8.
    index_table: ``[n_classes, max_per_class]`` int32 rows per class.
    counts: ``[n_classes]`` int32.
    batch_size: episodes per batch.
    image_shape: ``(H, W, C)``.
    protocol: the episode distribution.

  Example:
    >>> import numpy as np
    >>> from metajax.data import from_labels
    >>> ds = from_labels(np.zeros((120, 4, 4, 1), np.uint8), np.arange(120) % 6, list("abcdef"))
    >>> sampler = meta_dataset_sampler(ds, batch_size=2)
    >>> sampler.ways, sampler.counts.tolist()
    (6, [20, 20, 20, 20, 20, 20])

  References:
    Triantafillou et al., "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
    Examples", ICLR 2020, Section 3.2.
  """

  images: jax.Array
  index_table: jax.Array
  counts: jax.Array
  batch_size: int
  image_shape: tuple[int, int, int]
  protocol: Protocol = META_DATASET

  @property
  def ways(self) -> int:
    """The static class width ``W`` (the most classes of an episode)."""
    return static_ways(self.index_table.shape[0], self.protocol)

  def sample(self, key: jax.Array) -> Task:
    """One padded task batch for ``key`` (see :func:`sample_meta_dataset`)."""
    return _sample_jit(self, key)

  def iterate(self, key: jax.Array, *, num_batches: int | None = None,
              start: int = 0) -> Iterator[Task]:
    """Yields ``sample(fold_in(key, step))`` for ``step = start, start + 1, ...``."""
    return iterate_batches(self.sample, key, num_batches=num_batches, start=start)


def meta_dataset_sampler(dataset: ClassDataset, *, batch_size: int,
                         protocol: Protocol = META_DATASET,
                         device: jax.Device | None = None) -> MetaDatasetSampler:
  """Places ``dataset`` on the device and returns a Meta-Dataset episode sampler.

  Args:
    dataset: the classes of one split of one source.
    batch_size: episodes per batch (B).
    protocol: the episode distribution (default: the paper's constants).
    device: where to keep the images.

  Returns:
    A :class:`MetaDatasetSampler`; ``sample(key)`` gives a masked :class:`~metajax.Task` with
    ``support_x [B, 500, H, W, C]`` float32 in [0, 1], ``support_y [B, 500]``,
    ``support_mask [B, 500]`` and ``query_x [B, W * 10, H, W, C]`` (likewise).

  Raises:
    ValueError: a split with fewer than ``min_ways`` classes or a class with one image.

  Example:
    >>> import numpy as np
    >>> from metajax.data import from_labels
    >>> ds = from_labels(np.zeros((120, 4, 4, 1), np.uint8), np.arange(120) % 6, list("abcdef"))
    >>> sampler = meta_dataset_sampler(ds, batch_size=2)
    >>> task = sampler.sample(jax.random.key(0))
    >>> task.support_x.shape, task.query_x.shape, task.support_mask.dtype
    ((2, 500, 4, 4, 1), (2, 60, 4, 4, 1), dtype('bool'))

  References:
    Triantafillou et al., "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
    Examples", ICLR 2020 (Section 3.2, Appendix).
  """
  if isinstance(batch_size, bool) or int(batch_size) < 1:
    raise ValueError(f"batch_size={batch_size} must be a positive int")
  _check_source(dataset, protocol)
  table, counts = class_index_table(dataset)
  flat = dataset.images.reshape(-1, int(np.prod(dataset.image_shape)))
  put = functools.partial(jax.device_put, device=device)
  return MetaDatasetSampler(put(np.ascontiguousarray(flat, np.uint8)), put(table), put(counts),
                            int(batch_size), tuple(int(d) for d in dataset.image_shape),
                            protocol)


def rows_to_task(rows: EpisodeRows, pixels_support: jax.Array, pixels_query: jax.Array,
                 image_shape: Sequence[int]) -> Task:
  """A masked task batch from gathered uint8 pixel rows ``[B, n, H*W*C]``."""
  batch = rows.support_rows.shape[0]

  def scale(pixels, mask):
    # Padding images are zeros, whatever row they were read from.
    pixels = jnp.where(mask[..., None], pixels, jnp.zeros((), pixels.dtype))
    return (pixels.astype(jnp.float32) * (1.0 / 255.0)).reshape(batch, mask.shape[1],
                                                                 *image_shape)

  return Task(scale(pixels_support, rows.support_mask), rows.support_y,
              scale(pixels_query, rows.query_mask), rows.query_y, rows.support_mask,
              rows.query_mask)


def sample_meta_dataset(sampler: MetaDatasetSampler, key: jax.Array) -> Task:
  """Samples ``sampler.batch_size`` padded episodes; pure, usable inside ``jax.jit``."""
  rows = batch_rows(key, sampler.index_table, sampler.counts, sampler.batch_size,
                    sampler.protocol)
  take = lambda r: jnp.take(sampler.images, r, axis=0)
  return rows_to_task(rows, take(rows.support_rows), take(rows.query_rows), sampler.image_shape)


_sample_jit = jax.jit(sample_meta_dataset)


class MultiSourceSampler(NamedTuple):
  """Batches from one source at a time, the source drawn with fixed probabilities.

  Attributes:
    samplers: one sampler per source (in-memory or streaming; each has ``sample(key)``).
    probabilities: ``[n_sources]`` floats summing to 1.
    names: one name per source.

  Example:
    >>> import numpy as np
    >>> from metajax.data import from_labels
    >>> ds = from_labels(np.zeros((120, 4, 4, 1), np.uint8), np.arange(120) % 6, list("abcdef"))
    >>> one = meta_dataset_sampler(ds, batch_size=2)
    >>> mixed = MultiSourceSampler((one, one), (0.0, 1.0), ("never", "always"))
    >>> mixed.names[mixed.source_of(jax.random.key(0))]
    'always'

  References:
    Triantafillou et al., "Meta-Dataset", ICLR 2020, Section 3.2 (each episode from one source).
  """

  samplers: tuple
  probabilities: tuple[float, ...]
  names: tuple[str, ...]

  def source_of(self, key: jax.Array) -> int:
    """The source index of the batch sampled with ``key``."""
    u = float(jax.random.uniform(jax.random.fold_in(key, 0x5EED)))
    return int(min(np.searchsorted(np.cumsum(self.probabilities), u, side="right"),
                   len(self.samplers) - 1))

  def sample(self, key: jax.Array) -> Task:
    """One padded task batch, all of its episodes from the source picked by ``key``."""
    return self.samplers[self.source_of(key)].sample(key)

  def iterate(self, key: jax.Array, *, num_batches: int | None = None,
              start: int = 0) -> Iterator[Task]:
    """Yields ``sample(fold_in(key, step))`` for ``step = start, start + 1, ...``."""
    return iterate_batches(self.sample, key, num_batches=num_batches, start=start)


def multi_source_sampler(samplers: dict[str, object],
                         probabilities: dict[str, float] | None = None) -> MultiSourceSampler:
  """Combines per-source samplers; the default probabilities are uniform over sources.

  Args:
    samplers: ``{name: sampler}``; every sampler must give the same task shapes.
    probabilities: ``{name: weight}`` (normalised here), or None for uniform.

  Returns:
    A :class:`MultiSourceSampler`.

  Raises:
    ValueError: sources whose tasks differ in shape, or probabilities naming unknown sources.

  References:
    Triantafillou et al., "Meta-Dataset", ICLR 2020 (Section 3.2: each episode from one source).
  """
  if not samplers:
    raise ValueError("samplers is empty; pass at least one {name: sampler}.")
  names = tuple(samplers)
  shapes = {n: jax.eval_shape(s.sample, jax.random.key(0)) for n, s in samplers.items()}
  first = shapes[names[0]]
  for name in names[1:]:
    if jax.tree.map(lambda a: a.shape, shapes[name]) != jax.tree.map(lambda a: a.shape, first):
      raise ValueError(
          f"source '{name}' gives task shapes {jax.tree.map(lambda a: a.shape, shapes[name])} "
          f"but '{names[0]}' gives {jax.tree.map(lambda a: a.shape, first)}; resize every "
          "source to one image shape and give them the same number of padded ways "
          "(Protocol.max_ways no larger than the smallest split's classes).")
  weights = np.array([1.0 if probabilities is None else probabilities.get(n, 0.0)
                      for n in names], np.float64)
  if probabilities is not None and set(probabilities) - set(names):
    raise ValueError(f"probabilities name unknown sources {sorted(set(probabilities) - set(names))}"
                     f"; the sources are {list(names)}.")
  if (weights < 0).any() or weights.sum() <= 0:
    raise ValueError(f"source probabilities must be >= 0 and not all 0, got {probabilities}.")
  return MultiSourceSampler(tuple(samplers.values()), tuple((weights / weights.sum()).tolist()),
                            names)


def resize_dataset(dataset: ClassDataset, image_shape: Sequence[int], *,
                   chunk: int = 2048) -> ClassDataset:
  """Resizes every image to ``image_shape`` ``(H, W, C)`` (bilinear, antialiased), on the host.

  Meta-Dataset brings all sources to one image size so episodes of any source share one
  compiled step. Grayscale images become RGB by repeating the channel when ``C == 3``.

  Args:
    dataset: the source split.
    image_shape: the target ``(H, W, C)``; ``C`` must equal the source's channels, or be 3 for
      a 1-channel source.
    chunk: images resized per call (bounds the float32 working memory).

  Returns:
    The dataset with resized uint8 images (same classes and layout).
  """
  h, w, c = (int(d) for d in image_shape)
  src_c = dataset.image_shape[-1]
  if c != src_c and not (src_c == 1 and c == 3):
    raise ValueError(f"cannot turn {src_c}-channel images into {c} channels; use C={src_c} "
                     "(or C=3 for a grayscale source).")
  if tuple(dataset.image_shape) == (h, w, c):
    return dataset
  flat = dataset.images.reshape(-1, *dataset.image_shape)
  resize = jax.jit(lambda x: jnp.clip(jnp.round(jax.image.resize(
      x.astype(jnp.float32), (x.shape[0], h, w, src_c), "linear", antialias=True)), 0, 255
  ).astype(jnp.uint8))
  out = np.empty((len(flat), h, w, c), np.uint8)
  for i in range(0, len(flat), chunk):
    part = np.asarray(resize(flat[i:i + chunk]))
    out[i:i + chunk] = part if c == src_c else np.repeat(part, c, axis=-1)
  images = out.reshape(*dataset.images.shape[:-3], h, w, c)
  return dataset._replace(images=images)


def merge_sources(datasets: dict[str, ClassDataset], *, name: str = "") -> ClassDataset:
  """One dataset of several sources' classes, named ``"source:class"`` (same image shape).

  :func:`split_sources` undoes it, so a config can load every source as one split and the
  sampler can still draw each episode from one source.
  """
  per_class, names = [], []
  for source, dataset in datasets.items():
    for c in range(dataset.num_classes):
      per_class.append(dataset.class_images(c))
      names.append(f"{source}:{dataset.class_names[c]}")
  from metajax.data.dataset import from_class_lists

  return from_class_lists(per_class, names, name=name)


def split_sources(dataset: ClassDataset) -> dict[str, ClassDataset]:
  """The per-source datasets of a :func:`merge_sources` dataset, in order of appearance."""
  sources: dict[str, list[int]] = {}
  for c, class_name in enumerate(dataset.class_names):
    source, sep, _ = class_name.partition(":")
    if not sep:
      raise ValueError(f"class {class_name!r} has no 'source:' prefix; build the dataset with "
                       "metajax.data.meta_dataset.merge_sources.")
    sources.setdefault(source, []).append(c)
  return {s: dataset.select(classes)._replace(name=f"{dataset.name}/{s}")
          for s, classes in sources.items()}
