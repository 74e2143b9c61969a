"""Streaming episodes from array_record files through grain: data larger than memory.

The in-memory samplers (:func:`metajax.data.episode_sampler`,
:func:`metajax.data.meta_dataset.meta_dataset_sampler`) hold a whole split on the device. A
split that does not fit in RAM is converted once (:func:`write_source`, or
``metajax data convert SOURCE``) to an array_record file of one raw uint8 image per record,
class-major (all of class 0, then class 1, ...), beside a ``manifest.json`` that records the
class names, per-class counts, image shape and the SHA-256 of every file. The conversion writes
into a temporary folder and renames it into place, so a reader never sees a half-written source.

:class:`StreamingSampler` samples the *same* episodes as the in-memory samplers for the same key:
it computes the episode's rows with the same pure functions (a few KB per episode, on the host
CPU), then reads only those records through grain's ``ArrayRecordDataSource`` (random access,
chunked reads: memory stays bounded by the reader's buffers and the prefetched batches, not
by the dataset). Iteration is a grain ``MapDataset`` over step numbers mapped to batches, so it is
deterministic, prefetched by grain's reader threads, and checkpointable: ``iterator.get_state()``
is a small dict and ``set_state`` (or ``start=``) resumes bit-identically.

Memory. array_record reads with a thread pool, and glibc gives every thread its own malloc
arena: on a 2-core Linux machine 300 random 600-image reads grew RSS by ~40 MB that way, and by
~6 MB with ``MALLOC_ARENA_MAX=2`` in the environment (``benchmarks/bench_streaming.py``). Set it
when the memory budget is tight.

Needs the ``stream`` extra: ``pip install 'metajax[stream]'`` (grain; array_record comes with it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import Task
from metajax.data import meta_dataset as md
from metajax.data.dataset import ClassDataset

FORMAT = "metajax-array-record-v1"
RECORDS = "images.array_record"
MANIFEST = "manifest.json"


def _grain():
  try:
    import grain
  except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the streaming backend needs grain; install it with pip install 'metajax[stream]' "
        "(or pip install grain)") from err
  return grain


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write_source(dataset: ClassDataset, directory: str | os.PathLike, *,
                 overwrite: bool = False) -> Path:
  """Writes ``dataset`` as an array_record source with a manifest, atomically.

  Args:
    dataset: the classes of one split.
    directory: the folder to create (e.g. ``<cache>/stream/omniglot/train``).
    overwrite: replace an existing source there (else it is an error).

  Returns:
    ``directory`` as a :class:`~pathlib.Path`.

  Raises:
    FileExistsError: ``directory`` exists and ``overwrite`` is False.

  Example:
    >>> import numpy as np, tempfile
    >>> from metajax.data import from_labels
    >>> ds = from_labels(np.zeros((6, 2, 2, 1), np.uint8), [0, 0, 1, 1, 2, 2], list("abc"))
    >>> src = open_source(write_source(ds, tempfile.mkdtemp() + "/abc"))
    >>> src.counts.tolist(), src.image_shape
    ([2, 2, 2], (2, 2, 1))
  """
  return write_classes(((dataset.class_names[c], dataset.class_images(c))
                        for c in range(dataset.num_classes)), directory,
                       image_shape=dataset.image_shape, name=dataset.name, overwrite=overwrite)


def write_classes(classes: Iterable[tuple[str, np.ndarray]], directory: str | os.PathLike, *,
                  image_shape: Sequence[int], name: str = "", overwrite: bool = False) -> Path:
  """Like :func:`write_source`, from ``(class_name, [n_c, H, W, C] uint8)`` pairs one at a time.

  Only one class is in memory at once, so a source larger than RAM can be written (e.g. read
  class by class from image folders).
  """
  from array_record.python.array_record_module import ArrayRecordWriter

  target = Path(directory)
  if target.exists() and not overwrite:
    raise FileExistsError(
        f"{target} already holds a source; pass overwrite=True (--overwrite) to replace it.")
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
  tmp.chmod(0o755)  # mkdtemp makes it private; the source is an ordinary cache folder
  image_shape = tuple(int(d) for d in image_shape)
  try:
    # group_size:1 makes every record its own chunk: a random read decodes one image only.
    writer = ArrayRecordWriter(str(tmp / RECORDS), "group_size:1")
    names, counts = [], []
    for class_name, images in classes:
      images = np.asarray(images)
      if images.dtype != np.uint8 or tuple(images.shape[1:]) != image_shape:
        raise ValueError(f"class {class_name!r} has images {images.dtype} {images.shape[1:]}, "
                         f"expected uint8 {image_shape}; convert or resize them first.")
      for image in images:
        writer.write(np.ascontiguousarray(image).tobytes())
      names.append(str(class_name))
      counts.append(len(images))
    writer.close()
    manifest = {
        "format": FORMAT,
        "name": name,
        "image_shape": list(image_shape),
        "class_names": names,
        "counts": counts,
        "files": {RECORDS: _sha256(tmp / RECORDS)},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if target.exists():
      old = target.with_name(f".{target.name}.old")
      shutil.rmtree(old, ignore_errors=True)
      os.replace(target, old)
      os.replace(tmp, target)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


class StreamingSource(NamedTuple):
  """An array_record source opened for random access (nothing is loaded up front).

  Attributes:
    directory: the source folder.
    records: grain ``ArrayRecordDataSource`` (``records[i]`` is image ``i``'s bytes).
    class_names: one name per class.
    counts: ``[n_classes]`` int32 images per class.
    image_shape: ``(H, W, C)``.
    name: what the data is.
  """

  directory: Path
  records: object
  class_names: tuple[str, ...]
  counts: np.ndarray
  image_shape: tuple[int, int, int]
  name: str

  @property
  def index_table(self) -> np.ndarray:
    """``[n_classes, max_per_class]`` int32 record numbers (class-major layout)."""
    starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int32)
    width = int(self.counts.max())
    return starts[:, None] + np.minimum(np.arange(width, dtype=np.int32)[None, :],
                                        self.counts[:, None] - 1)

  def read(self, rows: np.ndarray) -> np.ndarray:
    """The uint8 pixels ``[*rows.shape, H*W*C]`` of record numbers ``rows``."""
    flat = np.asarray(rows, np.int64).reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    data = self.records.__getitems__(unique.tolist())
    pixels = np.frombuffer(b"".join(data), np.uint8).reshape(len(unique), -1)
    return pixels[inverse].reshape(*np.shape(rows), -1)


def open_source(directory: str | os.PathLike, *, verify: bool = False) -> StreamingSource:
  """Opens a source written by :func:`write_source`.

  Args:
    directory: the source folder.
    verify: recompute the files' SHA-256 and compare with the manifest (reads every byte).

  Returns:
    A :class:`StreamingSource`.

  Raises:
    FileNotFoundError: no manifest (convert the source first).
    ValueError: a manifest of another format, a record count or a hash that does not match.
  """
  grain = _grain()
  directory = Path(directory)
  manifest_path = directory / MANIFEST
  if not manifest_path.exists():
    raise FileNotFoundError(
        f"no {MANIFEST} in {directory}; write the source first with "
        "metajax.data.streaming.write_source or `metajax data convert SOURCE`.")
  manifest = json.loads(manifest_path.read_text())
  if manifest.get("format") != FORMAT:
    raise ValueError(f"{manifest_path} has format {manifest.get('format')!r}, expected "
                     f"{FORMAT!r}; convert the source again with this version of metajax.")
  if verify:
    for name, expected in manifest["files"].items():
      got = _sha256(directory / name)
      if got != expected:
        raise ValueError(f"{directory / name} has SHA-256 {got} but the manifest says "
                         f"{expected}: the file is damaged; convert the source again.")
  records = grain.sources.ArrayRecordDataSource(str(directory / RECORDS))
  counts = np.asarray(manifest["counts"], np.int32)
  if len(records) != int(counts.sum()):
    raise ValueError(f"{directory / RECORDS} holds {len(records)} records but the manifest "
                     f"counts {int(counts.sum())}; convert the source again.")
  return StreamingSource(directory, records, tuple(manifest["class_names"]), counts,
                         tuple(manifest["image_shape"]), manifest.get("name", ""))


class FixedShape(NamedTuple):
  """N-way K-shot Q-query episodes, as :func:`metajax.data.episode_sampler` samples them."""

  ways: int
  shots: int
  queries: int


class StreamingSampler:
  """Episodes read from a :class:`StreamingSource`; the same episodes as the in-memory samplers.

  With ``episodes=FixedShape(ways, shots, queries)`` batch ``key`` equals
  ``episode_sampler(dataset, ...).sample(key)`` (unmasked tasks); with a
  :class:`~metajax.data.meta_dataset.Protocol` it equals
  ``meta_dataset_sampler(dataset, ...).sample(key)`` (masked tasks).

  Args:
    source: an opened source.
    batch_size: episodes per batch.
    episodes: a :class:`FixedShape` or a :class:`~metajax.data.meta_dataset.Protocol`.
  """

  def __init__(self, source: StreamingSource, *, batch_size: int,
               episodes: FixedShape | md.Protocol = md.META_DATASET):
    self.source, self.batch_size, self.episodes = source, int(batch_size), episodes
    self._table, self._counts = jnp.asarray(source.index_table), jnp.asarray(source.counts)
    if isinstance(episodes, FixedShape):
      if episodes.ways > len(source.counts) or (
          episodes.shots + episodes.queries > source.counts.min()):
        raise ValueError(
            f"{episodes} does not fit the source '{source.name}' ({len(source.counts)} classes, "
            f"smallest class {int(source.counts.min())} images); lower ways, shots or queries.")
    elif not isinstance(episodes, md.Protocol):
      raise TypeError(f"episodes must be a FixedShape or a meta_dataset.Protocol, got "
                      f"{type(episodes).__name__}.")

  def _rows(self, key):
    if isinstance(self.episodes, FixedShape):
      return _fixed_rows(key, self._table, self._counts, *self.episodes, self.batch_size,
                         self.source.image_shape)
    return _protocol_rows(key, self._table, self._counts, self.batch_size, self.episodes)

  def sample(self, key: jax.Array) -> Task:
    """The batch of ``key``, read from the records, as host (numpy) arrays.

    Only the row draw runs in JAX (the same compiled functions as the in-memory samplers);
    reading, scaling and layout are numpy on the host, so grain's reader threads overlap them.
    """
    rows = jax.device_get(self._rows(key))
    shape, batch = self.source.image_shape, self.batch_size
    scale = np.float32(1.0 / 255.0)  # the in-memory samplers' float32 multiply, bit for bit
    if isinstance(self.episodes, FixedShape):
      n, k, q = self.episodes
      x = self.source.read(rows).reshape(batch, n, k + q, *shape).astype(np.float32) * scale
      labels = np.arange(n, dtype=np.int32)
      return Task(x[:, :, :k].reshape(batch, n * k, *shape),
                  np.broadcast_to(np.repeat(labels, k), (batch, n * k)),
                  x[:, :, k:].reshape(batch, n * q, *shape),
                  np.broadcast_to(np.repeat(labels, q), (batch, n * q)))

    def images(row_numbers, mask):
      pixels = np.zeros((*row_numbers.shape, int(np.prod(shape))), np.uint8)
      pixels[mask] = self.source.read(row_numbers[mask])  # padding stays zero, never read
      return pixels.reshape(batch, -1, *shape).astype(np.float32) * scale

    return Task(images(rows.support_rows, rows.support_mask), rows.support_y,
                images(rows.query_rows, rows.query_mask), rows.query_y, rows.support_mask,
                rows.query_mask)

  def dataset(self, key: jax.Array, *, num_batches: int | None = None):
    """A grain ``MapDataset`` whose element ``step`` is ``sample(fold_in(key, step))``."""
    grain = _grain()
    key_data = np.asarray(jax.random.key_data(key))
    impl = jax.random.key_impl(key)
    length = num_batches if num_batches is not None else np.iinfo(np.int32).max

    def batch(step):
      base = jax.random.wrap_key_data(key_data, impl=impl)
      return self.sample(jax.random.fold_in(base, step))

    return grain.MapDataset.range(length).map(batch)

  def iterate(self, key: jax.Array, *, num_batches: int | None = None, start: int = 0,
              prefetch: int = 2, threads: int = 2) -> Iterator[Task]:
    """Yields batches ``start, start + 1, ...`` through grain with ``prefetch`` batches ahead.

    The returned grain iterator is checkpointable: ``it.get_state()`` / ``it.set_state(s)``.
    """
    grain = _grain()
    ds = self.dataset(key, num_batches=None if num_batches is None else start + num_batches)
    options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)
    iterator = ds.to_iter_dataset(options).__iter__()
    if start:
      iterator.set_state({**iterator.get_state(), "next_index": start})
    return iterator


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _fixed_rows(key, table, counts, ways, shots, queries, batch_size, image_shape):
  """``[B, N, K+Q]`` rows, exactly as :func:`metajax.data.sample_episodes` draws them."""
  from metajax.data import sampler as fixed

  spec = fixed.EpisodeSampler(jnp.zeros((0, 1), jnp.uint8), table, counts, ways, shots, queries,
                              batch_size, image_shape)
  keys = jax.random.split(key, batch_size)
  return jax.vmap(lambda k: fixed._episode_rows(spec, k))(keys)


_protocol_rows = jax.jit(md.batch_rows, static_argnums=(3, 4))
