"""miniImageNet (100 ImageNet classes, 600 images each, 84x84 RGB), Ravi & Larochelle split.

Two layouts under ``<data_dir>/miniimagenet/`` are accepted, the first one found wins:

* the widely shared pickle cache ``mini-imagenet-cache-<split>.pkl``: a dict with ``image_data``
  (uint8 ``[N, 84, 84, 3]``) and ``class_dict`` (``{class: [row indices]}``); pickle can run code,
  so only load files you trust;
* the CSV split ``splits/ravi/<split>.csv`` (``filename,label``) with the images in ``images/``
  (resized to ``image_size`` with Lanczos filtering, converted to RGB); converted arrays are
  cached.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np

from metajax.data import _digest, _io, _paths
from metajax.data.dataset import ClassDataset, from_class_lists

SPLIT_CLASSES = {"train": 64, "val": 16, "test": 20}


def _from_pickle(path: Path, name: str) -> ClassDataset:
  try:
    with open(path, "rb") as f:
      content = pickle.load(f)
    images, class_dict = np.asarray(content["image_data"]), content["class_dict"]
  except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as err:
    raise ValueError(
      f"{path} is not a miniImageNet pickle cache with 'image_data' and 'class_dict' ({err})"
    ) from err
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(
      f"{path}: image_data must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}"
    )
  classes = sorted(class_dict)
  per_class = [images[np.asarray(class_dict[c], np.int64)] for c in classes]
  return from_class_lists(per_class, classes, name=name)


def _from_csv(folder: Path, split: str, image_size: int, cache_dir, workers) -> ClassDataset:
  csv_path = folder / "splits" / "ravi" / f"{split}.csv"
  with open(csv_path, newline="") as f:
    rows = [(r["filename"], r["label"]) for r in csv.DictReader(f)]
  classes = sorted({label for _, label in rows})
  cache_root = _paths.cache_dir(cache_dir)
  cache = cache_root / "miniimagenet" / f"{split}_{image_size}.npz"
  images_dir = folder / "images"
  missing = [f for f, _ in rows if not (images_dir / f).is_file()]
  if missing:
    raise FileNotFoundError(
      f"{len(missing)} images listed in {csv_path} are missing from {images_dir}, e.g. "
      f"{missing[0]}; put the miniImageNet images there"
    )
  # The key is the content used: the rows (file, label) and the bytes of each listed image.
  source_id = hashlib.sha256(
    json.dumps(rows).encode()
    + _digest.source_digest(images_dir, cache_root, [f for f, _ in rows]).encode()
  ).hexdigest()
  cached = _io.load_arrays(cache, ("images", "labels", "names", "source"))
  if not _digest.cache_is_current(cached, source_id, cache):
    pixels = _io.decode_many(
      images_dir,
      [f"images/{f}" for f, _ in rows],
      workers=workers,
      mode="RGB",
      size=(image_size, image_size),
    )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[label] for _, label in rows])
    cached = dict(images=pixels, labels=labels, names=np.array(classes), source=np.array(source_id))
    _io.save_arrays(cache, **cached)
  per_class = [cached["images"][cached["labels"] == c] for c in range(len(classes))]
  return from_class_lists(per_class, classes, name=f"miniimagenet/{split}")


def load_mini_imagenet(
  split: str = "train",
  *,
  image_size: int = 84,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
  workers: int | None = None,
) -> ClassDataset:
  """Loads a miniImageNet split (64 train / 16 val / 20 test classes).

  Args:
    split: ``"train"``, ``"val"`` or ``"test"``.
    image_size: side length for the CSV layout (the pickle cache is 84x84 as stored).
    data_dir: the data folder holding ``miniimagenet/``; see :func:`metajax.data.data_dir`.
    cache_dir: the cache folder (CSV layout only).
    workers: decoding threads for the CSV layout's first conversion.

  Returns:
    A dataset of the split's classes, named by WordNet id, dense when all counts are equal.

  Example:
    >>> load_mini_imagenet("test").num_classes  # doctest: +SKIP
    20

  References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016; Ravi and Larochelle,
    "Optimization as a Model for Few-Shot Learning", ICLR 2017.
  """
  if split not in SPLIT_CLASSES:
    raise ValueError(f"split={split!r} is not a miniImageNet split; use one of {[*SPLIT_CLASSES]}")
  folder = _paths.data_dir(data_dir) / "miniimagenet"
  pickled = folder / f"mini-imagenet-cache-{split}.pkl"
  if pickled.is_file():
    return _from_pickle(pickled, f"miniimagenet/{split}")
  if (folder / "splits" / "ravi" / f"{split}.csv").is_file() and (folder / "images").is_dir():
    return _from_csv(folder, split, image_size, cache_dir, workers)
  raise FileNotFoundError(
    f"miniImageNet {split} not found: looked for {pickled} and for "
    f"{folder / 'splits' / 'ravi' / f'{split}.csv'} with an images/ folder beside splits/"
  )
