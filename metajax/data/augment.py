"""Augmentations: rotations as new classes (numpy, on a dataset) and per-image random crop and
horizontal flip (pure JAX, for the ``augment=`` argument of :func:`episode_sampler`)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metajax.data.dataset import ClassDataset, from_class_lists


def rotation_name(class_name: str, quarter_turns: int) -> str:
  """Returns ``"<class_name>/rotNNN"``, the name of a class rotated by ``90 * quarter_turns``."""
  return f"{class_name}/rot{90 * (quarter_turns % 4):03d}"


def rotations_as_classes(
  dataset: ClassDataset, quarter_turns: Sequence[int] = (0, 1, 2, 3)
) -> ClassDataset:
  """Adds rotated copies of every class as new classes (the Omniglot standard).

  Rotation is counter-clockwise, as PIL's ``Image.rotate(90 * k)`` and ``np.rot90``. The result
  is class-major: class ``c`` rotated by each entry of ``quarter_turns``, then class ``c + 1``.

  Args:
    dataset: the base classes.
    quarter_turns: rotations to add, in quarter turns (``1`` = 90 degrees).

  Returns:
    A dataset with ``len(quarter_turns) * num_classes`` classes named ``<name>/rotNNN``.

  Example:
    >>> ds = ClassDataset(np.zeros((2, 3, 5, 5, 1), np.uint8), ("a", "b"))
    >>> rotations_as_classes(ds).class_names[:2]
    ('a/rot000', 'a/rot090')

  References:
    Santoro et al., "Meta-Learning with Memory-Augmented Neural Networks", ICML 2016; Vinyals et
    al., "Matching Networks for One Shot Learning", NeurIPS 2016.
  """
  names = tuple(rotation_name(n, k) for n in dataset.class_names for k in quarter_turns)
  if dataset.is_dense:
    rotated = [np.rot90(dataset.images, k, axes=(-3, -2)) for k in quarter_turns]
    images = np.stack(rotated, axis=1).reshape(-1, *dataset.images.shape[1:])
    return ClassDataset(np.ascontiguousarray(images), names, None, dataset.name)
  per_class = [
    np.rot90(dataset.class_images(c), k, axes=(-3, -2))
    for c in range(dataset.num_classes)
    for k in quarter_turns
  ]
  return from_class_lists(per_class, names, name=dataset.name)


def random_flip(key: jax.Array, image: jax.Array) -> jax.Array:
  """Mirrors an ``[H, W, C]`` image left-right with probability 1/2.

  Args:
    key: a PRNG key.
    image: ``[H, W, C]``.

  Returns:
    The image, flipped or not (same shape and dtype).

  Example:
    >>> image = jnp.arange(3.0).reshape(1, 3, 1)    # one row of three pixels
    >>> outcomes = {tuple(random_flip(jax.random.key(i), image).ravel().tolist()) for i in range(8)}
    >>> sorted(outcomes)
    [(0.0, 1.0, 2.0), (2.0, 1.0, 0.0)]
  """
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1], image)


def random_crop(*, padding: int, fill: float = 0.0):
  """Returns ``crop(key, image)``: pad by ``padding`` pixels, then crop back to ``[H, W, C]``.

  Args:
    padding: pixels added on every side (4 for 32x32 CIFAR-FS, 8 for 84x84 miniImageNet are
      common choices).
    fill: the value of the padding pixels.

  Returns:
    A per-image augmentation for :func:`episode_sampler`.

  Example:
    >>> crop = random_crop(padding=2)
    >>> crop(jax.random.key(0), jnp.ones((8, 8, 3))).shape
    (8, 8, 3)
  """
  if padding < 0:
    raise ValueError(f"padding={padding} must be non-negative")

  def crop(key: jax.Array, image: jax.Array) -> jax.Array:
    height, width, channels = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), constant_values=fill)
    top, left = jax.random.randint(key, (2,), 0, 2 * padding + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))

  return crop


def compose(*augments):
  """Chains per-image augmentations, each with its own key.

  Args:
    *augments: functions ``augment(key, image) -> image``.

  Returns:
    ``augment(key, image)`` applying them in order.

  Example:
    >>> aug = compose(random_crop(padding=4), random_flip)
    >>> aug(jax.random.key(0), jnp.zeros((32, 32, 3))).shape
    (32, 32, 3)
  """

  def composed(key: jax.Array, image: jax.Array) -> jax.Array:
    for i, augment in enumerate(augments):
      image = augment(jax.random.fold_in(key, i), image)
    return image

  return composed
