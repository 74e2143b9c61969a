"""CIFAR-FS: CIFAR-100 (32x32 RGB, 600 images per class) with Bertinetto et al.'s class split.

Reads the official CIFAR-100 python archive ``cifar100/cifar-100-python.tar.gz`` (or its extracted
``cifar100/cifar-100-python/`` folder) in the data folder; the ``train`` and ``test`` pickles are
pooled by fine label. Those pickles are the official distribution format: only load archives you
trust (pickle can run code).
"""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from metajax.data import _digest, _io, _paths
from metajax.data.dataset import ClassDataset, from_labels

# Class split of Bertinetto et al. 2019, as distributed with their code (github.com/bertinetto/r2d2,
# data/cifar-fs/splits/bertinetto) and in torchmeta's assets (datasets/assets/cifar100/cifar-fs).
CIFAR_FS_SPLITS = {
  "train": [
    "dolphin",
    "seal",
    "aquarium_fish",
    "ray",
    "trout",
    "orchid",
    "sunflower",
    "tulip",
    "bottle",
    "bowl",
    "can",
    "cup",
    "plate",
    "apple",
    "mushroom",
    "orange",
    "pear",
    "clock",
    "keyboard",
    "chair",
    "couch",
    "bee",
    "caterpillar",
    "cockroach",
    "bear",
    "lion",
    "tiger",
    "wolf",
    "bridge",
    "castle",
    "house",
    "road",
    "skyscraper",
    "cloud",
    "forest",
    "mountain",
    "elephant",
    "kangaroo",
    "porcupine",
    "possum",
    "raccoon",
    "skunk",
    "lobster",
    "spider",
    "boy",
    "girl",
    "dinosaur",
    "lizard",
    "snake",
    "turtle",
    "hamster",
    "mouse",
    "rabbit",
    "shrew",
    "squirrel",
    "oak_tree",
    "palm_tree",
    "pine_tree",
    "willow_tree",
    "bus",
    "train",
    "lawn_mower",
    "streetcar",
    "tank",
  ],
  "val": [
    "beaver",
    "otter",
    "flatfish",
    "shark",
    "lamp",
    "television",
    "beetle",
    "butterfly",
    "sea",
    "camel",
    "cattle",
    "crab",
    "crocodile",
    "maple_tree",
    "motorcycle",
    "tractor",
  ],
  "test": [
    "whale",
    "poppy",
    "rose",
    "sweet_pepper",
    "telephone",
    "bed",
    "table",
    "wardrobe",
    "leopard",
    "plain",
    "chimpanzee",
    "fox",
    "snail",
    "worm",
    "baby",
    "man",
    "woman",
    "bicycle",
    "pickup_truck",
    "rocket",
  ],
}


def _find_source(root: Path) -> Path:
  for candidate in (
    root / "cifar100" / "cifar-100-python.tar.gz",
    root / "cifar100" / "cifar-100-python",
  ):
    if candidate.exists():
      return candidate
  raise FileNotFoundError(
    f"CIFAR-100 not found: looked for cifar-100-python.tar.gz and cifar-100-python/ in "
    f"{root / 'cifar100'}. Download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz there"
  )


def _read_pickles(source: Path) -> dict[str, dict]:
  wanted = ("train", "test", "meta")
  try:
    if source.is_dir():
      return {k: pickle.loads((source / k).read_bytes(), encoding="bytes") for k in wanted}
    with tarfile.open(source) as tar:
      members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
      missing = [k for k in wanted if k not in members]
      if missing:
        raise ValueError(f"{source} lacks {missing}; it is not the CIFAR-100 python archive")
      return {k: pickle.loads(tar.extractfile(members[k]).read(), encoding="bytes") for k in wanted}
  except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as err:
    raise ValueError(
      f"cannot read {source} ({err}); it is corrupt or truncated. Download it again"
    ) from err


def load_cifar_fs(
  split: str = "train",
  *,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
) -> ClassDataset:
  """Loads a CIFAR-FS split: 64 train, 16 val or 20 test classes of 600 32x32 RGB images.

  Args:
    split: ``"train"``, ``"val"`` or ``"test"``.
    data_dir: the data folder holding ``cifar100/``; see :func:`metajax.data.data_dir`.
    cache_dir: the cache folder; see :func:`metajax.data.cache_dir`.

  Returns:
    A dense dataset ``[n_classes, 600, 32, 32, 3]`` uint8 named by CIFAR-100 fine label.

  Example:
    >>> load_cifar_fs("test").images.shape  # doctest: +SKIP
    (20, 600, 32, 32, 3)

  References:
    Bertinetto et al., "Meta-learning with differentiable closed-form solvers", ICLR 2019;
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
  """
  if split not in CIFAR_FS_SPLITS:
    raise ValueError(f"split={split!r} is not a CIFAR-FS split; use one of {[*CIFAR_FS_SPLITS]}")
  source = _find_source(_paths.data_dir(data_dir))
  cache_root = _paths.cache_dir(cache_dir)
  cache = cache_root / "cifar-fs" / "cifar100.npz"
  members = None if source.is_file() else ["train", "test", "meta"]
  source_id = _digest.source_digest(source, cache_root, members)  # content, not name and size
  cached = _io.load_arrays(cache, ("images", "labels", "names", "source"))
  if not _digest.cache_is_current(cached, source_id, cache):
    parts = _read_pickles(source)
    names = [n.decode() for n in parts["meta"][b"fine_label_names"]]
    images = np.concatenate([parts[k][b"data"] for k in ("train", "test")])
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8)
    labels = np.concatenate([parts[k][b"fine_labels"] for k in ("train", "test")])
    cached = dict(images=images, labels=labels, names=np.array(names), source=np.array(source_id))
    _io.save_arrays(cache, **cached)
  names = cached["names"].tolist()
  everything = from_labels(cached["images"], cached["labels"], names, name=f"cifar-fs/{split}")
  return everything.select(CIFAR_FS_SPLITS[split])
