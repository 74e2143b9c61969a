"""Episode sampler: shapes, determinism, disjoint support/query, errors, augmentation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.data import (
  ClassDataset,
  compose,
  episode_sampler,
  from_labels,
  random_crop,
  random_flip,
  rotations_as_classes,
  sample_episodes,
)


def _tagged(n_classes: int, per_class: int) -> ClassDataset:
  """Images whose two pixels are (class, example): episodes can be decoded exactly."""
  c, i = np.meshgrid(np.arange(n_classes), np.arange(per_class), indexing="ij")
  images = np.stack([c, i], axis=-1).astype(np.uint8).reshape(n_classes, per_class, 1, 2, 1)
  return ClassDataset(images, tuple(f"c{k}" for k in range(n_classes)), None, "tagged")


def _decode(x) -> np.ndarray:
  return np.rint(np.asarray(x)[..., 0] * 255).astype(int).reshape(*x.shape[:2], 2)


def test_real_omniglot_shapes_and_ranges(omniglot_splits):
  sampler = episode_sampler(omniglot_splits["train"], ways=20, shots=5, queries=15, batch_size=4)
  task = sampler.sample(jax.random.key(0))
  assert task.support_x.shape == (4, 100, 28, 28, 1) and task.support_x.dtype == jnp.float32
  assert task.query_x.shape == (4, 300, 28, 28, 1)
  assert task.support_y.shape == (4, 100) and task.support_y.dtype == jnp.int32
  assert task.query_y.shape == (4, 300)
  assert float(task.support_x.min()) >= 0.0 and float(task.support_x.max()) <= 1.0
  assert set(np.unique(task.query_y).tolist()) == set(range(20))


def test_same_key_same_episodes_on_real_data(omniglot_splits):
  test = omniglot_splits["test"]
  a = episode_sampler(test, ways=5, shots=1, queries=5, batch_size=8)
  b = episode_sampler(test, ways=5, shots=1, queries=5, batch_size=8)
  one, two = a.sample(jax.random.key(3)), b.sample(jax.random.key(3))
  jax.tree.map(np.testing.assert_array_equal, one, two)
  other = a.sample(jax.random.key(4))
  assert not np.array_equal(one.support_x, other.support_x)


def test_support_query_disjoint_and_labels_consistent():
  sampler = episode_sampler(_tagged(30, 20), ways=5, shots=3, queries=7, batch_size=16)
  task = sampler.sample(jax.random.key(1))
  support, query = _decode(task.support_x), _decode(task.query_x)
  for b in range(16):
    for label in range(5):
      s = support[b][np.asarray(task.support_y[b]) == label]
      q = query[b][np.asarray(task.query_y[b]) == label]
      classes = set(s[:, 0]) | set(q[:, 0])
      assert len(classes) == 1  # one class per label
      examples = list(s[:, 1]) + list(q[:, 1])
      assert len(examples) == len(set(examples)) == 10  # distinct, support and query disjoint
    assert len(set(support[b][:, 0])) == 5  # distinct classes per episode


def test_every_class_and_example_is_reachable():
  sampler = episode_sampler(_tagged(12, 6), ways=3, shots=1, queries=1, batch_size=64)
  seen = _decode(sampler.sample(jax.random.key(0)).support_x).reshape(-1, 2)
  assert set(seen[:, 0]) == set(range(12)) and set(seen[:, 1]) == set(range(6))


def test_unequal_classes_never_draw_padding():
  labels = np.repeat(np.arange(4), [3, 9, 5, 4])
  images = np.stack([labels, np.arange(len(labels))], -1).astype(np.uint8).reshape(-1, 1, 2, 1)
  dataset = from_labels(images, labels, ["a", "b", "c", "d"])
  assert not dataset.is_dense and dataset.examples_per_class == (3, 9, 5, 4)
  sampler = episode_sampler(dataset, ways=4, shots=1, queries=2, batch_size=32)
  task = sampler.sample(jax.random.key(2))
  rows = np.concatenate([_decode(task.support_x), _decode(task.query_x)], axis=1).reshape(-1, 2)
  assert np.array_equal(labels[rows[:, 1]], rows[:, 0])  # each image is from its class


def test_iterate_matches_sample_and_resumes():
  sampler = episode_sampler(_tagged(10, 5), ways=2, shots=1, queries=1, batch_size=2)
  key = jax.random.key(7)
  batches = list(sampler.iterate(key, num_batches=3, start=5))
  assert len(batches) == 3
  for step, batch in zip(range(5, 8), batches, strict=True):
    expected = sampler.sample(jax.random.fold_in(key, step))
    jax.tree.map(np.testing.assert_array_equal, batch, expected)


def test_sample_episodes_under_jit_takes_the_sampler_as_argument():
  sampler = episode_sampler(_tagged(10, 5), ways=2, shots=2, queries=1, batch_size=3)
  task = jax.jit(sample_episodes)(sampler, jax.random.key(0))
  jax.tree.map(np.testing.assert_array_equal, task, sampler.sample(jax.random.key(0)))


def test_ways_larger_than_split_is_a_clear_error(omniglot_splits):
  small = omniglot_splits["test"].select(list(range(20)))
  with pytest.raises(ValueError, match="ways=25 but the split 'omniglot/vinyals/test' has only 20"):
    episode_sampler(small, ways=25, shots=1, queries=1, batch_size=1)


def test_shots_plus_queries_larger_than_class_is_a_clear_error():
  with pytest.raises(ValueError, match=r"shots \+ queries = 5 \+ 16 = 21 but class 'c0'"):
    episode_sampler(_tagged(10, 20), ways=5, shots=5, queries=16, batch_size=1)


def test_augmentations():
  key = jax.random.key(0)
  image = jnp.arange(2 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 1)
  np.testing.assert_array_equal(random_crop(padding=0)(key, image), image)
  crops = jax.vmap(random_crop(padding=1))(jax.random.split(key, 64), jnp.ones((64, 4, 4, 1)))
  assert crops.shape == (64, 4, 4, 1) and float(crops.min()) == 0.0  # some crops show padding
  flips = jax.vmap(random_flip, (0, None))(jax.random.split(key, 64), image)
  flipped = np.all(np.asarray(flips) == np.asarray(image[:, ::-1]), axis=(1, 2, 3))
  assert 0 < flipped.sum() < 64
  sampler = episode_sampler(
    _tagged(6, 4), ways=2, shots=1, queries=1, batch_size=2, augment=compose(random_flip)
  )
  assert sampler.sample(key).support_x.shape == (2, 2, 1, 2, 1)


def test_rotations_as_classes_on_unequal_classes():
  labels = np.array([0, 0, 1, 1, 1])
  images = np.arange(5 * 2 * 2, dtype=np.uint8).reshape(5, 2, 2, 1)
  rotated = rotations_as_classes(from_labels(images, labels, ["a", "b"]), (0, 2))
  assert rotated.class_names == ("a/rot000", "a/rot180", "b/rot000", "b/rot180")
  assert rotated.examples_per_class == (2, 2, 3, 3)
  np.testing.assert_array_equal(rotated.class_images(3), images[2:, ::-1, ::-1])
