"""Tiny-ImageNet (200 WordNet classes, 64x64 RGB) with a fixed few-shot class split.

Only the training images are used (``train/<wnid>/images/*.JPEG``); the official ``val``/``test``
folders are ignored. Grayscale JPEGs are converted to RGB.

Class split (this library's, fixed): the 200 wnids of ``wnids.txt`` sorted, permuted by
``numpy.random.default_rng(0).permutation(200)``; the first 120 are ``train``, the next 40 ``val``
and the last 40 ``test``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metajax.data import _digest, _io, _paths
from metajax.data.dataset import ClassDataset

NUM_CLASSES = 200
SPLIT_SIZES = {"train": 120, "val": 40, "test": 40}
SPLIT_SEED = 0
_ARCHIVES = ("tiny-imagenet-200.zip", "tiny-imagenet-200-train100.zip", "tiny-imagenet-200")


def class_split(wnids: list[str]) -> dict[str, list[str]]:
  """Returns ``{"train": 120 wnids, "val": 40, "test": 40}``, the fixed split described above."""
  if len(wnids) != NUM_CLASSES or len(set(wnids)) != NUM_CLASSES:
    raise ValueError(
      f"wnids.txt lists {len(set(wnids))} distinct classes but Tiny-ImageNet has {NUM_CLASSES}"
    )
  order = np.random.default_rng(SPLIT_SEED).permutation(NUM_CLASSES)
  shuffled = [sorted(wnids)[i] for i in order]
  train, val = SPLIT_SIZES["train"], SPLIT_SIZES["val"]
  return {
    "train": shuffled[:train],
    "val": shuffled[train : train + val],
    "test": shuffled[train + val :],
  }


def _find_source(root: Path) -> Path:
  folder = root / "tiny-imagenet"
  for name in _ARCHIVES:
    if (folder / name).exists():
      return folder / name
  raise FileNotFoundError(
    f"Tiny-ImageNet not found: looked for {', '.join(_ARCHIVES)} in {folder}. Download "
    "http://cs231n.stanford.edu/tiny-imagenet-200.zip into that folder"
  )


def tiny_imagenet_classes(
  *,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
  workers: int | None = None,
) -> ClassDataset:
  """Loads all 200 classes (training images only), converting and caching on first use.

  Args:
    data_dir: the data folder holding ``tiny-imagenet/``; see :func:`metajax.data.data_dir`.
    cache_dir: the cache folder; see :func:`metajax.data.cache_dir`.
    workers: JPEG decoding threads for the first conversion (see ``_io.decode_many``).

  Returns:
    A dense dataset ``[200, n_per_class, 64, 64, 3]`` uint8 named by wnid, in sorted wnid order
    (``n_per_class`` is 500 for the official archive).

  Raises:
    FileNotFoundError: when no archive or folder is found.
    ValueError: when the archive is damaged, an image cannot be decoded, or classes are missing.

  References:
    Le & Yang, "Tiny ImageNet Visual Recognition Challenge", CS231N, Stanford, 2015.
  """
  source = _find_source(_paths.data_dir(data_dir))
  cache_root = _paths.cache_dir(cache_dir)
  cache = cache_root / "tiny-imagenet" / f"{source.stem}.npz"
  source_id = _digest.source_digest(source, cache_root)  # content, not name and size
  cached = _io.load_arrays(cache, ("images", "names", "source"))
  if _digest.cache_is_current(cached, source_id, cache):
    return ClassDataset(cached["images"], tuple(cached["names"].tolist()), None, "tiny-imagenet")

  with _io.ImageSource(source) as files:
    names = files.names()
    wnids_file = next((n for n in names if n.endswith("/wnids.txt") or n == "wnids.txt"), None)
    if wnids_file is None:
      raise ValueError(f"{source} has no wnids.txt; it is not the official Tiny-ImageNet layout")
    wnids = sorted(files.read(wnids_file).decode().split())
  prefix = wnids_file.removesuffix("wnids.txt")
  by_class = {wnid: [] for wnid in wnids}
  for name in names:
    parts = name.removeprefix(prefix).split("/")
    is_train_jpeg = len(parts) == 4 and parts[0] == "train" and parts[2] == "images"
    if is_train_jpeg and parts[1] in by_class and parts[3].lower().endswith((".jpeg", ".jpg")):
      by_class[parts[1]].append(name)
  counts = {wnid: len(files) for wnid, files in by_class.items()}
  if len(wnids) != NUM_CLASSES or len(set(counts.values())) != 1 or min(counts.values()) == 0:
    fewest = min(counts, key=counts.get) if counts else None
    raise ValueError(
      f"{source} has {len(wnids)} classes with {min(counts.values(), default=0)} to "
      f"{max(counts.values(), default=0)} training images (fewest: {fewest}); Tiny-ImageNet has "
      f"{NUM_CLASSES} classes with equal counts (500, or 100 in the train100 subset). The "
      "archive is incomplete: download it again"
    )
  ordered = [name for wnid in wnids for name in sorted(by_class[wnid])]
  pixels = _io.decode_many(source, ordered, workers=workers, mode="RGB", size=(64, 64))
  images = pixels.reshape(NUM_CLASSES, -1, 64, 64, 3)
  _io.save_arrays(cache, images=images, names=np.array(wnids), source=np.array(source_id))
  return ClassDataset(images, tuple(wnids), None, "tiny-imagenet")


def load_tiny_imagenet(
  split: str = "train",
  *,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
  workers: int | None = None,
) -> ClassDataset:
  """Loads one split (``"train"`` 120, ``"val"`` 40 or ``"test"`` 40 classes) of Tiny-ImageNet.

  Args:
    split: ``"train"``, ``"val"`` or ``"test"`` (see the module docstring for the split).
    data_dir: the data folder holding ``tiny-imagenet/<archive>.zip`` or the extracted
      ``tiny-imagenet/tiny-imagenet-200/``.
    cache_dir: the cache folder.
    workers: decoding threads for the first conversion.

  Returns:
    A dense dataset ``[n_classes, n_per_class, 64, 64, 3]`` uint8.

  Example:
    >>> load_tiny_imagenet("test").num_classes  # doctest: +SKIP
    40

  References:
    Le and Yang, "Tiny ImageNet Visual Recognition Challenge", CS231N 2015.
  """
  if split not in SPLIT_SIZES:
    raise ValueError(f"split={split!r} is not a Tiny-ImageNet split; use one of {[*SPLIT_SIZES]}")
  everything = tiny_imagenet_classes(data_dir=data_dir, cache_dir=cache_dir, workers=workers)
  chosen = class_split(list(everything.class_names))[split]
  return everything.select(chosen)._replace(name=f"tiny-imagenet/{split}")
