"""Any TFDS image-classification dataset as a :class:`ClassDataset` (optional extra ``tfds``).

Records are read with ``tfds.data_source`` (random access to ``array_record`` files), which needs
``tensorflow-datasets`` and ``array-record`` but not TensorFlow. The dataset must already be
prepared in ``data_dir`` in the ``array_record`` format.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from metajax.data.dataset import ClassDataset, from_labels


def from_tfds(
  name: str,
  *,
  split: str,
  data_dir: str | os.PathLike | None = None,
  image_key: str = "image",
  label_key: str = "label",
  chunk_size: int = 1024,
) -> ClassDataset:
  """Reads a prepared TFDS dataset into a class-indexed dataset.

  Args:
    name: the TFDS name, e.g. ``"omniglot"`` or ``"cifar100"``.
    split: the TFDS split, e.g. ``"train"``.
    data_dir: the TFDS data folder (``~/tensorflow_datasets`` when ``None``).
    image_key: the uint8 image feature.
    label_key: the ``ClassLabel`` feature giving the class.
    chunk_size: records read per call.

  Returns:
    A dataset with one class per label value present in the split, in label order (names from
    the ``ClassLabel`` feature). Label values without examples in the split are left out: a
    ``ClassLabel`` names the classes of every split, e.g. omniglot's 1623 characters of which
    ``"train"`` holds 964 and ``"test"`` 659.

  Raises:
    ImportError: when ``tensorflow-datasets`` is not installed.
    ValueError: when the dataset has no ``label_key`` (or ``image_key``) feature.

  Example:
    >>> ds = from_tfds("omniglot", split="test")  # doctest: +SKIP

  Omniglot can be prepared offline from the official zips with
  :func:`metajax.data.prepare_tfds_omniglot`.
  """
  try:
    tfds = importlib.import_module("tensorflow_datasets")
  except ImportError as err:
    raise ImportError(
      "from_tfds needs tensorflow-datasets: pip install 'metajax[tfds]' (or "
      "pip install tensorflow-datasets array-record importlib_resources)"
    ) from err
  source = tfds.data_source(name, split=split, data_dir=data_dir)
  features = source.dataset_info.features
  for key, what in ((label_key, "labels"), (image_key, "images")):
    if key not in features:
      raise ValueError(
        f"TFDS dataset {name!r} has no feature {key!r} (it has {sorted(features.keys())}); it "
        f"has no {what} under that name: pass {what[:-1]}_key=... or use a classification dataset"
      )
  class_names = getattr(features[label_key], "names", None)
  if class_names is None:
    raise ValueError(
      f"feature {label_key!r} of {name!r} is not a ClassLabel; it has no class names"
    )
  images, labels = [], []
  for start in range(0, len(source), chunk_size):
    records = source.__getitems__(list(range(start, min(start + chunk_size, len(source)))))
    images.extend(np.asarray(r[image_key], np.uint8) for r in records)
    labels.extend(int(r[label_key]) for r in records)
  present, labels = np.unique(np.asarray(labels, np.int64), return_inverse=True)
  return from_labels(
    np.stack(images), labels, [class_names[i] for i in present], name=f"tfds/{name}/{split}"
  )
