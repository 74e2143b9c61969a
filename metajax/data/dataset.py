"""A class-indexed image dataset: the input of the episode sampler."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class ClassDataset(NamedTuple):
  """Images grouped by class, as uint8 arrays on the host.

  Two layouts, both ``[..., H, W, C]`` uint8:

  * dense (every class has the same count, e.g. Omniglot): ``images`` is
    ``[n_classes, n_per_class, H, W, C]`` and ``class_indices`` is ``None``;
  * indexed (unequal counts): ``images`` is ``[n_images, H, W, C]`` and ``class_indices[c]``
    lists the rows of class ``c``.

  Attributes:
    images: uint8 pixels, 0..255 (scaled to [0, 1] float32 by the sampler).
    class_names: one name per class, e.g. ``"Greek/character01/rot090"`` or a WordNet id.
    class_indices: ``None`` for the dense layout, else one int64 index array per class.
    name: what the data is, used in error messages (e.g. ``"omniglot/vinyals/test"``).

  Example:
    >>> ds = from_labels(np.zeros((6, 4, 4, 1), np.uint8), [0, 0, 1, 1, 1, 2], ["a", "b", "c"])
    >>> ds.num_classes, ds.examples_per_class
    (3, (2, 3, 1))
  """

  images: np.ndarray
  class_names: tuple[str, ...]
  class_indices: tuple[np.ndarray, ...] | None = None
  name: str = ""

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, ...]:
    """``(H, W, C)``."""
    return tuple(self.images.shape[-3:])

  @property
  def is_dense(self) -> bool:
    return self.class_indices is None

  @property
  def examples_per_class(self) -> tuple[int, ...]:
    if self.class_indices is None:
      return (int(self.images.shape[1]),) * int(self.images.shape[0])
    return tuple(len(ix) for ix in self.class_indices)

  def class_images(self, c: int) -> np.ndarray:
    """Returns the ``[n_c, H, W, C]`` images of class ``c``."""
    if self.class_indices is None:
      return self.images[c]
    return self.images[self.class_indices[c]]

  def select(self, classes: Sequence[int] | Sequence[str]) -> ClassDataset:
    """Returns the dataset restricted to ``classes`` (indices or names), in that order.

    Args:
      classes: class indices or class names.

    Returns:
      A dense dataset when every selected class has the same count, else an indexed one.
    """
    if len(classes) and isinstance(classes[0], str):
      lookup = {name: i for i, name in enumerate(self.class_names)}
      missing = [name for name in classes if name not in lookup]
      if missing:
        raise ValueError(
          f"{len(missing)} requested classes are not in the dataset, e.g. {missing[:3]}; "
          "check the split file against the data"
        )
      classes = [lookup[name] for name in classes]
    names = tuple(self.class_names[c] for c in classes)
    if self.class_indices is None:
      return ClassDataset(self.images[np.asarray(classes, np.int64)], names, None, self.name)
    return from_class_lists([self.class_images(c) for c in classes], names, name=self.name)


def from_class_lists(
  per_class: Sequence[np.ndarray], class_names: Sequence[str], *, name: str = ""
) -> ClassDataset:
  """Builds a dataset from one ``[n_c, H, W, C]`` uint8 array per class.

  Args:
    per_class: the images of each class.
    class_names: one name per class.
    name: what the data is, for error messages.

  Returns:
    A dense dataset when all counts are equal, else an indexed one.

  Raises:
    ValueError: when the number of arrays and of class names differ.

  Example:
    >>> two = np.zeros((2, 4, 4, 1), np.uint8)
    >>> from_class_lists([two, two], ["a", "b"]).is_dense
    True
    >>> ds = from_class_lists([two, np.zeros((3, 4, 4, 1), np.uint8)], ["a", "b"])
    >>> ds.is_dense, ds.examples_per_class, ds.images.shape
    (False, (2, 3), (5, 4, 4, 1))
  """
  if len(per_class) != len(class_names):
    raise ValueError(f"got {len(per_class)} image arrays but {len(class_names)} class names")
  counts = [len(x) for x in per_class]
  if len(set(counts)) <= 1:
    images = np.stack(per_class).astype(np.uint8, copy=False)
    return ClassDataset(images, tuple(class_names), None, name)
  starts = np.cumsum([0, *counts])
  indices = tuple(np.arange(starts[c], starts[c + 1], dtype=np.int64) for c in range(len(counts)))
  images = np.concatenate(per_class).astype(np.uint8, copy=False)
  return ClassDataset(images, tuple(class_names), indices, name)


def from_labels(
  images: np.ndarray,
  labels: Sequence[int] | np.ndarray,
  class_names: Sequence[str],
  *,
  name: str = "",
) -> ClassDataset:
  """Builds a dataset from flat ``[n, H, W, C]`` images and integer labels.

  Args:
    images: uint8 images, ``[n, H, W, C]`` (``[n, H, W]`` gets a channel axis).
    labels: ``[n]`` ints in ``[0, len(class_names))``.
    class_names: one name per label value.
    name: what the data is, for error messages.

  Returns:
    A dense dataset when all classes have the same count, else an indexed one.

  Raises:
    ValueError: when ``images`` are not uint8, or ``labels`` do not match them in length or lie
      outside ``[0, len(class_names))``.

  Example:
    >>> ds = from_labels(np.zeros((4, 3, 3), np.uint8), [1, 0, 1, 0], ["cat", "dog"])
    >>> ds.is_dense, ds.images.shape
    (True, (2, 2, 3, 3, 1))
  """
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 0..255, got dtype {images.dtype}; convert first")
  labels = np.asarray(labels, np.int64)
  if labels.shape != (len(images),):
    raise ValueError(f"labels shape {labels.shape} does not match {len(images)} images")
  order = np.argsort(labels, kind="stable")
  counts = np.bincount(labels, minlength=len(class_names))
  if len(counts) > len(class_names):
    raise ValueError(f"label {labels.max()} is out of range for {len(class_names)} class names")
  if len(set(counts.tolist())) == 1:
    dense = images[order].reshape(len(counts), -1, *images.shape[1:])
    return ClassDataset(dense, tuple(class_names), None, name)
  indices = tuple(np.split(order, np.cumsum(counts)[:-1]))
  return ClassDataset(images, tuple(class_names), indices, name)
