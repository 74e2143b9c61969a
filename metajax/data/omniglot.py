"""Omniglot from the official archives, with the Vinyals and background/evaluation splits.

Pixels: ink is 1.0 (uint8 255) and background 0.0, the convention of Prototypical Networks
(``1 - image``), so zero padding and rotation keep a blank background. Images are resized from
105x105 with Lanczos filtering (as Finn et al.'s MAML data preparation), so strokes are gray at
their edges. Converted arrays are cached as ``<cache_dir>/omniglot/<archive>_<size>.npz``, keyed by
the sha256 of the archive's content (a changed or damaged archive rebuilds the cache).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from metajax.data import _digest, _io, _paths
from metajax.data.augment import rotations_as_classes
from metajax.data.dataset import ClassDataset

# archive stem -> (alphabets, characters); every character has exactly 20 drawings.
ARCHIVES = {"images_background": (30, 964), "images_evaluation": (20, 659)}
DRAWINGS_PER_CHARACTER = 20
VINYALS_SPLITS = {"train": 4112, "val": 688, "test": 1692, "trainval": 4800}
_SPLIT_SOURCE = (
  "https://github.com/jakesnell/prototypical-networks/tree/master/data/omniglot/splits/vinyals"
)


def _archive_path(root: Path, stem: str) -> Path:
  for candidate in (root / "omniglot" / f"{stem}.zip", root / "omniglot" / stem):
    if candidate.exists():
      return candidate
  raise FileNotFoundError(
    f"Omniglot archive {stem}.zip not found in {root / 'omniglot'} (nor an extracted {stem}/ "
    f"folder); fetch it with 'metajax data download omniglot --data-dir {root}' (or "
    f"metajax.data.download_omniglot('{root / 'omniglot'}'))"
  )


def _check_counts(stem: str, path: Path, names: list[str],
                  counts: tuple[int, int] | None = None) -> None:
  """Raises unless ``names`` hold the official alphabets, characters and 20 drawings each.

  ``counts`` is ``(alphabets, characters)``, by default that of ``ARCHIVES[stem]``.
  """
  alphabets, characters = counts or ARCHIVES[stem]
  per_character = Counter(n.rsplit("/", 1)[0] for n in names)
  found_alphabets = {c.split("/")[1] for c in per_character}
  bad = {c: k for c, k in per_character.items() if k != DRAWINGS_PER_CHARACTER}
  if len(found_alphabets) != alphabets or len(per_character) != characters or bad:
    raise ValueError(
      f"{path} holds {len(found_alphabets)} alphabets, {len(per_character)} characters and "
      f"{len(names)} images, but the official {stem} has {alphabets} alphabets, {characters} "
      f"characters and {DRAWINGS_PER_CHARACTER} drawings each"
      + (f" (e.g. {next(iter(bad))} has {next(iter(bad.values()))})" if bad else "")
      + "; the archive is incomplete or not the official one. Download it again with "
      "metajax.data.download_omniglot"
    )


def omniglot_characters(
  archive: str = "images_background",
  *,
  image_size: int = 28,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
  workers: int | None = None,
) -> ClassDataset:
  """Loads every character of one official archive, without rotations.

  The first call decodes the PNGs (about 10 s per 1,000 characters on one core, split over
  ``workers`` threads) and caches the result; later calls load the cache in well under a second.

  Args:
    archive: ``"images_background"`` (964 characters) or ``"images_evaluation"`` (659).
    image_size: output side length (28 as Vinyals et al.; 84 or 105 also common).
    data_dir: the data folder (holding ``omniglot/``); see :func:`metajax.data.data_dir`.
    cache_dir: where converted arrays live; see :func:`metajax.data.cache_dir`.
    workers: decoding threads; default ``min(4, cpu_count)``; ``workers=1`` decodes in the
      calling thread. No ``if __name__ == "__main__":`` guard is needed (nothing is spawned).

  Returns:
    A dense dataset ``[n_characters, 20, S, S, 1]`` named ``"Alphabet/characterNN"``.

  Raises:
    FileNotFoundError: when the archive is missing.
    ValueError: when the archive is damaged, an image cannot be decoded, or the counts differ
      from the official release.

  References:
    Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic
    program induction", Science 350, 2015 (the dataset and its background/evaluation archives).
  """
  if archive not in ARCHIVES:
    raise ValueError(f"archive={archive!r} is not one of {sorted(ARCHIVES)}")
  if not 1 <= image_size <= 1024:
    raise ValueError(f"image_size={image_size} must be between 1 and 1024 (105 is the original)")
  source = _archive_path(_paths.data_dir(data_dir), archive)
  cache_root = _paths.cache_dir(cache_dir)
  cache = cache_root / "omniglot" / f"{archive}_{image_size}.npz"
  source_id = _digest.source_digest(source, cache_root)
  cached = _io.load_arrays(cache, ("images", "names", "source"))
  if _digest.cache_is_current(cached, source_id, cache):
    return ClassDataset(cached["images"], tuple(cached["names"].tolist()), None, archive)

  with _io.ImageSource(source) as files:
    names = [n for n in files.names() if n.lower().endswith(".png")]
  _check_counts(archive, source, names)
  characters = sorted({n.rsplit("/", 1)[0] for n in names})
  pixels = _io.decode_many(
    source, names, workers=workers, mode="L", size=(image_size, image_size), invert=True
  )
  images = pixels.reshape(len(characters), DRAWINGS_PER_CHARACTER, image_size, image_size, 1)
  class_names = np.array([c.split("/", 1)[1] for c in characters])
  _io.save_arrays(cache, images=images, names=class_names, source=np.array(source_id))
  return ClassDataset(images, tuple(class_names.tolist()), None, archive)


def _read_split(root: Path, split: str) -> list[str]:
  path = root / "omniglot" / "splits" / "vinyals" / f"{split}.txt"
  if not path.is_file():
    raise FileNotFoundError(
      f"Vinyals split file {path} not found; fetch it with 'metajax data download omniglot "
      f"--data-dir {root}', or copy the split files from {_SPLIT_SOURCE} there"
    )
  lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
  if len(lines) != VINYALS_SPLITS[split]:
    raise ValueError(
      f"{path} has {len(lines)} classes but the Vinyals {split} split has "
      f"{VINYALS_SPLITS[split]}; replace it with the file from {_SPLIT_SOURCE}"
    )
  return lines


def load_omniglot(
  split: str = "train",
  *,
  image_size: int = 28,
  data_dir: str | os.PathLike | None = None,
  cache_dir: str | os.PathLike | None = None,
  workers: int | None = None,
) -> ClassDataset:
  """Loads an Omniglot split as a class-indexed dataset.

  Splits:
    * ``"train"``, ``"val"``, ``"test"``, ``"trainval"``: the Vinyals et al. split (4112 / 688 /
      1692 / 4800 classes) read from ``omniglot/splits/vinyals/<split>.txt``, where each class is a
      character rotated by 0, 90, 180 or 270 degrees (counter-clockwise);
    * ``"background"``, ``"evaluation"``: Lake et al.'s archives (964 / 659 characters), no
      rotations (add them with :func:`metajax.data.rotations_as_classes`).

  Args:
    split: one of the names above.
    image_size: output side length, 28 by default.
    data_dir: the data folder; see :func:`metajax.data.data_dir`.
    cache_dir: the cache folder; see :func:`metajax.data.cache_dir`.
    workers: PNG decoding threads for the first conversion (see :func:`omniglot_characters`).

  Returns:
    A dense dataset ``[n_classes, 20, S, S, 1]`` uint8 (ink 255, background 0).

  Example:
    >>> train = load_omniglot("train")  # doctest: +SKIP
    >>> train.images.shape  # doctest: +SKIP
    (4112, 20, 28, 28, 1)

  References:
    Lake et al., "Human-level concept learning through probabilistic program induction",
    Science 2015; Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
  """
  options = dict(image_size=image_size, data_dir=data_dir, cache_dir=cache_dir, workers=workers)
  if split in ("background", "evaluation"):
    return omniglot_characters(f"images_{split}", **options)._replace(name=f"omniglot/{split}")
  if split not in VINYALS_SPLITS:
    raise ValueError(
      f"split={split!r} is not an Omniglot split; use one of "
      f"{[*VINYALS_SPLITS, 'background', 'evaluation']}"
    )
  lines = _read_split(_paths.data_dir(data_dir), split)
  characters = [omniglot_characters(stem, **options) for stem in ARCHIVES]
  base = ClassDataset(
    np.concatenate([c.images for c in characters]),
    sum((c.class_names for c in characters), ()),
    None,
    f"omniglot/vinyals/{split}",
  )
  rotated = rotations_as_classes(base.select(sorted({ln.rsplit("/", 1)[0] for ln in lines})))
  return rotated.select(lines)
