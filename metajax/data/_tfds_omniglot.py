"""Prepares the TFDS ``omniglot`` dataset offline from local archives (optional extra ``tfds``).

TFDS's own ``Omniglot`` builder downloads the four archives from github.com and checks their
registered checksums, so it cannot run offline, and it cannot use rebuilt archives (same images,
different zip bytes). :func:`prepare_tfds_omniglot` runs a subclass of that builder (same name,
version, features and split names, so ``tfds.data_source("omniglot", data_dir=...)`` and
:func:`metajax.data.from_tfds` read the result) that reads the PNGs straight out of local zips:
no download manager, no checksums of remote files, no TensorFlow. The content is verified instead
(alphabet, character and drawing counts of every archive, 105x105 images, the numbering of
characters shared by the ``small`` and full archives, and the example count of every split).

One deliberate difference from a TensorFlow-prepared dataset: each 1-bit PNG is re-encoded as
an 8-bit grayscale PNG (0 = ink, 255 = background). The decoded pixels are those TensorFlow decodes
from the official records; but ``tfds.data_source`` decodes with PIL when OpenCV is not installed,
and PIL turns the official 1-bit PNGs into 0/1, not 0/255. Ours decode to 0/255 with PIL, OpenCV
and TensorFlow alike.

Preparing all four splits (32,460 + 5,840 images) takes about 30 s of one core (the PNG
re-encoding is half of it) and writes ~20 MB.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from metajax.data import _paths
from metajax.data.omniglot import DRAWINGS_PER_CHARACTER, _check_counts

# split -> (archive stem, alphabets, characters); every character has 20 drawings.
SPLITS = {
  "train": ("images_background", 30, 964),
  "test": ("images_evaluation", 20, 659),
  "small1": ("images_background_small1", 5, 136),
  "small2": ("images_background_small2", 5, 156),
}
_NUM_CLASSES = 1623
_NUM_ALPHABETS = 50


def _import_tfds():
  try:
    return importlib.import_module("tensorflow_datasets")
  except ImportError as err:
    raise ImportError(
      "prepare_tfds_omniglot needs tensorflow-datasets: pip install 'metajax[tfds]' (or "
      "pip install tensorflow-datasets array-record importlib_resources)"
    ) from err


def _members(archive: Path) -> list[tuple[str, str, int, int, str]]:
  """Lists ``(member, alphabet, character_id, label, file)`` of one archive, checking counts."""
  split = next(s for s, (stem, _, _) in SPLITS.items() if stem == archive.stem)
  _, alphabets, characters = SPLITS[split]
  try:
    with zipfile.ZipFile(archive) as zf:
      names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
  except (zipfile.BadZipFile, OSError) as err:
    raise ValueError(f"{archive} is not a readable zip archive: {err}") from err
  members = []
  for name in names:
    parts = name.split("/")
    if len(parts) != 4 or not parts[2].startswith("character") or "_" not in parts[3]:
      raise ValueError(
        f"{archive}: member {name!r} is not in the official layout "
        f"{archive.stem}/<Alphabet>/characterNN/<label>_<drawing>.png"
      )
    _, alphabet, character, file = parts
    label = int(file.split("_")[0]) - 1  # the global character number 0001..1623, as TFDS
    members.append((name, alphabet, int(character[len("character") :]) - 1, label, file))
  _check_counts(archive.stem, archive, names, counts=(alphabets, characters))
  return members


def _names(archives: dict[str, Path]) -> tuple[list[str], list[str]]:
  """Alphabet and label names as TFDS's builder derives them (union over the archives)."""
  alphabets, labels = set(), {}
  for archive in archives.values():
    for _, alphabet, character_id, label, _ in _members(archive):
      alphabets.add(alphabet)
      name = f"{alphabet}_{character_id}"
      if labels.setdefault(label, name) != name:
        raise ValueError(
          f"{archive}: character number {label + 1:04d} is {name} there but {labels[label]} in "
          "another archive; the archives do not belong together"
        )
  if len(alphabets) != _NUM_ALPHABETS or sorted(labels) != list(range(_NUM_CLASSES)):
    raise ValueError(
      f"the archives hold {len(alphabets)} alphabets and {len(labels)} characters; TFDS omniglot "
      f"needs {_NUM_ALPHABETS} and {_NUM_CLASSES} (images_background.zip and "
      "images_evaluation.zip together)"
    )
  return sorted(alphabets), [labels[k] for k in sorted(labels)]


def _reencode_png(data: bytes, where: str) -> bytes:
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(io.BytesIO(data)) as image:
      gray = image.convert("L")
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
    raise ValueError(f"cannot decode image {where}: {err}; the file is damaged") from err
  if gray.size != (105, 105):
    raise ValueError(f"image {where} is {gray.size[0]}x{gray.size[1]}, not 105x105")
  buffer = io.BytesIO()
  gray.save(buffer, format="PNG")
  return buffer.getvalue()


@functools.cache
def _builder_class():
  tfds = _import_tfds()
  from tensorflow_datasets.image_classification import omniglot

  class LocalOmniglot(omniglot.Omniglot, skip_registration=True):
    """TFDS ``omniglot`` 3.0.0, generated from local zips instead of downloads."""

    name = "omniglot"

    def __init__(self, *, archives: dict[str, Path], **kwargs):
      self._archives = archives
      super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      alphabets, labels = _names(self._archives)
      self.info.features["alphabet"].names = alphabets
      self.info.features["label"].names = labels
      return [
        tfds.core.SplitGenerator(name=split, gen_kwargs={"archive": path})
        for split, path in self._archives.items()
      ]

    def _generate_examples(self, archive):
      members = _members(archive)
      # Pillow releases the GIL while decoding and encoding, so threads re-encode in parallel.
      with zipfile.ZipFile(archive) as zf, ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        images = pool.map(
          lambda name: _reencode_png(zf.read(name), f"'{name}' in {archive}"),
          [m[0] for m in members],
        )
        for (_, alphabet, character_id, label, file), image in zip(members, images):
          record = {
            "image": image,
            "alphabet": alphabet,
            "alphabet_char_id": character_id,
            "label": label,
          }
          yield f"{alphabet}_{character_id}_{file}", record  # TFDS's key, hence its order

  return LocalOmniglot


def prepare_tfds_omniglot(
  archives_dir: str | os.PathLike | None = None,
  data_dir: str | os.PathLike | None = None,
) -> Path:
  """Prepares TFDS ``omniglot`` (3.0.0, ``array_record``) from local archives, offline.

  Needs ``tensorflow-datasets``, ``array-record`` and Pillow, not TensorFlow. Nothing is
  downloaded and TFDS's registered checksums are not used (they describe the github.com zips);
  the archive contents are verified instead: ``images_background.zip`` (split ``train``: 30
  alphabets, 964 characters), ``images_evaluation.zip`` (``test``: 20, 659),
  ``images_background_small1.zip`` (``small1``: 5, 136) and ``images_background_small2.zip``
  (``small2``: 5, 156), 20 drawings of 105x105 per character, and each split's example count.
  Records match TFDS's builder (keys, labels, alphabets, names), except that images are stored
  as 8-bit grayscale PNGs (see the module docstring); they decode to ``[105, 105, 3]`` uint8, ink 0
  and background 255.

  TFDS writes into a temporary folder and renames it when done, so an interrupted run leaves no
  half-prepared dataset. When the dataset is already prepared in ``data_dir`` it is reused as it
  is (delete ``<data_dir>/omniglot`` to rebuild).

  Args:
    archives_dir: the folder holding the four zips; default ``<data folder>/omniglot`` (see
      :func:`metajax.data.data_dir`).
    data_dir: the TFDS data folder; default TFDS's (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).

  Returns:
    The prepared dataset folder, ``<data_dir>/omniglot/3.0.0``.

  Raises:
    ImportError: when ``tensorflow-datasets`` is not installed.
    FileNotFoundError: when an archive is missing.
    ValueError: when an archive is damaged or its counts differ from the official release.

  Example:
    >>> tfds_dir = "~/tensorflow_datasets"
    >>> prepare_tfds_omniglot("data/omniglot", tfds_dir)  # doctest: +SKIP
    >>> train = from_tfds("omniglot", split="train", data_dir=tfds_dir)  # doctest: +SKIP
  """
  tfds = _import_tfds()
  root = Path(archives_dir) if archives_dir is not None else _paths.data_dir() / "omniglot"
  root = root.expanduser()
  archives = {split: root / f"{stem}.zip" for split, (stem, _, _) in SPLITS.items()}
  missing = [p.name for p in archives.values() if not p.is_file()]
  if missing:
    raise FileNotFoundError(
      f"Omniglot archives {missing} not found in {root}; fetch them with "
      f"metajax.data.download_omniglot('{root}')"
    )
  if data_dir is not None:
    data_dir = os.fspath(Path(data_dir).expanduser())
  builder = _builder_class()(archives=archives, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  expected = {split: characters * DRAWINGS_PER_CHARACTER
              for split, (_, _, characters) in SPLITS.items()}
  found = {split: info.num_examples for split, info in builder.info.splits.items()}
  if found != expected:
    raise ValueError(
      f"TFDS omniglot in {builder.data_dir} has {found} examples per split, not {expected}; "
      "delete that folder and prepare it again"
    )
  return Path(os.fspath(builder.data_dir))
