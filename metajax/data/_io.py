"""Archive reading, image decoding and the atomic array cache shared by the dataset loaders."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

CACHE_VERSION = 1


class ImageSource:
  """Files under a root, read either from a zip archive or from its extracted folder.

  Member names are archive-style relative paths with ``/`` separators, e.g.
  ``images_background/Greek/character01/0394_01.png``.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    self.is_zip = self.path.is_file()
    self._zip: zipfile.ZipFile | None = None
    if self.is_zip:
      try:
        self._zip = zipfile.ZipFile(self.path)
      except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(
          f"{self.path} is not a readable zip archive ({err}); it is corrupt or truncated. Delete "
          "it and download it again"
        ) from err
    elif not self.path.is_dir():
      raise FileNotFoundError(f"{self.path} does not exist (neither a zip file nor a folder)")

  def names(self) -> list[str]:
    """Returns every file (not folder) name, sorted."""
    if self._zip is not None:
      return sorted(n for n in self._zip.namelist() if not n.endswith("/"))
    root = self.path.parent
    return sorted(p.relative_to(root).as_posix() for p in self.path.rglob("*") if p.is_file())

  def read(self, name: str) -> bytes:
    """Returns the bytes of member ``name``; a damaged member raises ``ValueError`` naming it."""
    try:
      if self._zip is not None:
        return self._zip.read(name)
      return (self.path.parent / name).read_bytes()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
      raise ValueError(
        f"cannot read '{name}' from {self.path} ({err}); the archive is corrupt or truncated. "
        "Delete it and download it again"
      ) from err

  def close(self) -> None:
    if self._zip is not None:
      self._zip.close()

  def __enter__(self) -> ImageSource:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def decode_image(
  data: bytes,
  *,
  where: str,
  mode: str,
  size: tuple[int, int] | None = None,
  invert: bool = False,
) -> np.ndarray:
  """Decodes an encoded image to a uint8 ``[H, W, C]`` array.

  Args:
    data: PNG/JPEG bytes.
    where: the file name (and archive) for error messages.
    mode: PIL mode to convert to, ``"L"`` (gray, C=1) or ``"RGB"`` (C=3; grayscale JPEGs
      become RGB).
    size: ``(width, height)`` to resize to with Lanczos filtering, or ``None``.
    invert: replace ``v`` by ``255 - v`` (dark ink becomes 1.0).

  Returns:
    ``[H, W, C]`` uint8.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image = image.convert(mode)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
    raise ValueError(f"cannot decode image {where}: {err}; the file is damaged") from err
  if size is not None and image.size != tuple(size):
    image = image.resize(tuple(size), Image.Resampling.LANCZOS)
  array = np.asarray(image, np.uint8)
  if invert:
    array = 255 - array
  return array[..., None] if array.ndim == 2 else array


def _decode_chunk(source: str, names: list[str], options: dict) -> np.ndarray:
  with ImageSource(source) as files:
    return np.stack(
      [decode_image(files.read(name), where=f"'{name}' in {source}", **options) for name in names]
    )


def decode_many(
  source: str | os.PathLike,
  names: list[str],
  *,
  workers: int | None = None,
  **options,
) -> np.ndarray:
  """Decodes many members of one archive or folder into a ``[n, H, W, C]`` uint8 array.

  Args:
    source: a zip file or the extracted folder (see :class:`ImageSource`).
    names: members to decode, in output order; all must decode to the same shape.
    workers: decoding threads, default ``min(4, cpu_count)``; ``workers=1`` decodes in the
      calling thread. Threads, not processes: PIL and zlib release the GIL while they decode,
      and nothing is spawned, so a plain script, a notebook or ``python - <<EOF`` needs no
      ``if __name__ == "__main__":`` guard (spawned processes re-ran such a script and died
      with ``BrokenProcessPool``).
    **options: ``mode``, ``size``, ``invert`` of :func:`decode_image`.

  Returns:
    ``[len(names), H, W, C]`` uint8.
  """
  workers = workers or min(4, os.cpu_count() or 1)
  # Few large chunks: each chunk reopens the zip (~0.2 s to read a large directory).
  step = max(1, -(-len(names) // (2 * workers)))
  chunks = [names[i : i + step] for i in range(0, len(names), step)]
  if workers > 1 and len(chunks) > 1:
    # Each chunk opens its own ZipFile: one handle is not safe to read from several threads.
    with ThreadPoolExecutor(workers, thread_name_prefix="metajax-decode") as pool:
      parts = list(
        pool.map(_decode_chunk, [str(source)] * len(chunks), chunks, [options] * len(chunks))
      )
  else:
    parts = [_decode_chunk(str(source), chunk, options) for chunk in chunks]
  return np.concatenate(parts)


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
  """Writes an ``.npz`` atomically: a temporary file in the same folder, fsync, then rename.

  A crash leaves either the old file or none at ``path``, never a partial one.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, cache_version=np.int64(CACHE_VERSION), **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def load_arrays(path: str | os.PathLike, keys: Iterable[str]) -> dict[str, np.ndarray] | None:
  """Loads a cache written by :func:`save_arrays`; ``None`` when absent, stale or unreadable."""
  path = Path(path)
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      if int(npz["cache_version"]) != CACHE_VERSION:
        return None
      return {k: npz[k] for k in keys}
  except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
    return None
