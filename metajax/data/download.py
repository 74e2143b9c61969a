"""Resumable, checksum-verified downloads (urllib only), and :func:`download_omniglot`."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
# sha256 of the official zips, as registered by tensorflow-datasets
# (tensorflow_datasets/url_checksums/omniglot.txt).
OMNIGLOT_SHA256 = {
  "images_background": "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
  "images_evaluation": "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
  "images_background_small1": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
  "images_background_small2": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
}
VINYALS_SPLITS_URL = (
  "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/"
  "splits/vinyals/"
)


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
  """Returns the hex sha256 of a file."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk_size):
      digest.update(block)
  return digest.hexdigest()


def download_file(
  url: str,
  path: str | os.PathLike,
  *,
  sha256: str | None = None,
  timeout: float = 60.0,
  chunk_size: int = 1 << 20,
) -> Path:
  """Downloads ``url`` to ``path``, resuming a partial ``<path>.part`` with an HTTP Range request.

  The data goes to ``<path>.part``; only a complete file whose checksum matches is renamed to
  ``path`` (atomically). A server that ignores ``Range`` makes the download start over.

  Args:
    url: what to fetch.
    path: where the file ends up.
    sha256: the expected hex digest; ``None`` skips the check.
    timeout: socket timeout in seconds.
    chunk_size: bytes per read.

  Returns:
    ``path``. An existing ``path`` with the right checksum is kept without a request.

  Raises:
    ValueError: when the checksum differs (the ``.part`` file is deleted).
    urllib.error.URLError: when the server cannot be reached (the ``.part`` file is kept for a
      later resume).

  Example:
    A ``file://`` URL stands in for a server here:

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> source = folder / "source.txt"
    >>> source.write_text("hello")
    5
    >>> copy = download_file(source.as_uri(), folder / "copy.txt", sha256=sha256_of(source))
    >>> copy.read_text()
    'hello'

  References:
    RFC 9110, "HTTP Semantics", Section 14 (range requests, status 206 and 416), 2022.
  """
  path = Path(path)
  if path.is_file() and (sha256 is None or sha256_of(path) == sha256):
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  part = path.with_name(path.name + ".part")
  offset = part.stat().st_size if part.is_file() else 0
  request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      resumed = offset > 0 and response.status == 206
      with open(part, "ab" if resumed else "wb") as f:
        while block := response.read(chunk_size):
          f.write(block)
        f.flush()
        os.fsync(f.fileno())
  except urllib.error.HTTPError as err:
    if not (err.code == 416 and offset > 0):  # 416: the .part file is already complete
      raise
  if sha256 is not None:
    actual = sha256_of(part)
    if actual != sha256:
      part.unlink()
      raise ValueError(
        f"sha256 of {url} is {actual} but {sha256} was expected; the download is corrupt or the "
        "file changed upstream. The partial file was deleted: retry, or pass the mirror's "
        "checksum if you trust it"
      )
  os.replace(part, path)
  return path


def download_omniglot(
  dest: str | os.PathLike,
  *,
  base_url: str = OMNIGLOT_URL,
  archives: Sequence[str] = ("images_background", "images_evaluation"),
  sha256: Mapping[str, str | None] | None = None,
  splits_url: str | None = VINYALS_SPLITS_URL,
  timeout: float = 60.0,
) -> dict[str, Path]:
  """Downloads the Omniglot archives (and the Vinyals split files) into ``dest``.

  ``dest`` is the ``omniglot`` folder of a data folder: with ``dest = "/data/omniglot"``, set
  ``METAJAX_DATA_DIR=/data``. Each archive is verified by sha256 (the official digests by default)
  and, for the two full archives, by content (alphabet, character and drawing counts); a file that
  fails is deleted.

  Args:
    dest: the folder to write ``<archive>.zip`` (and ``splits/vinyals/*.txt``) into.
    base_url: where ``<archive>.zip`` lives; the official repository by default.
    archives: archive stems to fetch (add ``"images_background_small1"``/``"..._small2"`` for the
      official small subsets).
    sha256: expected digests per stem; ``None`` uses the official ones, a ``None`` value skips the
      byte check of that archive (the content check still runs), e.g. for a rebuilt mirror.
    splits_url: where ``{train,val,test,trainval}.txt`` of the Vinyals split live (from the
      Prototypical Networks release); ``None`` skips them.
    timeout: socket timeout in seconds.

  Returns:
    ``{stem or "splits/<name>": path}`` of everything fetched.

  Example:
    >>> download_omniglot("/data/omniglot")  # doctest: +SKIP
    {'images_background': PosixPath('/data/omniglot/images_background.zip'), ...}

  References:
    Lake et al., "Human-level concept learning through probabilistic program induction", Science
    2015 (https://github.com/brendenlake/omniglot).
  """
  from metajax.data import _io, omniglot

  dest = Path(dest)
  expected = OMNIGLOT_SHA256 if sha256 is None else sha256
  fetched = {}
  for stem in archives:
    if stem not in OMNIGLOT_SHA256:
      raise ValueError(f"archive {stem!r} is not one of {sorted(OMNIGLOT_SHA256)}")
    path = download_file(
      f"{base_url.rstrip('/')}/{stem}.zip",
      dest / f"{stem}.zip",
      sha256=expected.get(stem),
      timeout=timeout,
    )
    if stem in omniglot.ARCHIVES:
      try:
        with _io.ImageSource(path) as files:
          names = [n for n in files.names() if n.lower().endswith(".png")]
        omniglot._check_counts(stem, path, names)
      except ValueError:
        path.unlink()
        raise
    fetched[stem] = path
  if splits_url is not None:
    for split, count in omniglot.VINYALS_SPLITS.items():
      target = dest / "splits" / "vinyals" / f"{split}.txt"
      download_file(f"{splits_url.rstrip('/')}/{split}.txt", target, timeout=timeout)
      lines = [ln for ln in target.read_text().splitlines() if ln.strip()]
      if len(lines) != count:
        target.unlink()
        raise ValueError(
          f"{split}.txt from {splits_url} has {len(lines)} lines but the Vinyals {split} split "
          f"has {count}; the file was deleted"
        )
      fetched[f"splits/{split}"] = target
  return fetched
