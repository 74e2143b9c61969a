"""Content digests of source archives and folders, the keys of every derived-array cache.

A cache is valid only for the bytes it was made from: a different copy of a dataset with the same
file names, or an archive damaged in place without changing its size, must not reuse it. So each
loader stores the sha256 of its sources in the cache and rebuilds when it differs (and says so on
the ``metajax.data`` logger; library code never prints).

Hashing is cheap for archives (sha256 runs at ~0.5-1 GB/s: Omniglot's two zips take ~30 ms), but a
folder of 60,000 images is worth remembering. Digests are remembered per file under
``(path, size, mtime_ns)``, in this process and in ``<cache_dir>/source_digests.json``; a file whose
size or modification time changed is hashed again. Inside :func:`fresh_digests` (used by
``metajax data check``) nothing remembered is trusted: every file is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger("metajax.data")

MEMO_FILE = "source_digests.json"
_memo: dict[str, dict] = {}
_memo_lock = threading.Lock()
_fresh = threading.local()


@contextlib.contextmanager
def fresh_digests() -> Iterator[None]:
  """Within this block every source file is hashed again, whatever was remembered.

  ``metajax data check`` loads every split inside it, so an archive damaged in place is found
  even when its size and modification time are unchanged and its cache is warm.

  Yields:
    Nothing; the loaders called inside the block re-hash their sources (and rebuild a cache
    whose source changed).

  Example:
    >>> from metajax import data
    >>> with data.fresh_digests():  # doctest: +SKIP
    ...   data.load_omniglot("test")  # re-hashes the archives; rebuilds a stale cache
  """
  previous = getattr(_fresh, "on", False)
  _fresh.on = True
  try:
    yield
  finally:
    _fresh.on = previous


def _file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(chunk_size):
      digest.update(chunk)
  return digest.hexdigest()


def _load_memo(cache_dir: Path) -> dict[str, dict]:
  try:
    memo = json.loads((cache_dir / MEMO_FILE).read_text())
    return memo if isinstance(memo, dict) else {}
  except (OSError, ValueError):
    return {}


def _save_memo(cache_dir: Path, memo: dict[str, dict]) -> None:
  try:
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{MEMO_FILE}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
      json.dump(memo, f)
    os.replace(tmp, cache_dir / MEMO_FILE)
  except OSError:  # a read-only cache folder only costs a re-hash next time
    logger.debug("could not write %s", cache_dir / MEMO_FILE)


def file_digests(paths: Iterable[Path], cache_dir: Path) -> list[str]:
  """sha256 hex digests of ``paths`` (remembered per path, size and mtime; see module doc)."""
  fresh = getattr(_fresh, "on", False)
  paths = [Path(p) for p in paths]
  with _memo_lock:
    disk = {} if fresh else _load_memo(cache_dir)
    digests, changed = [], False
    for path in paths:
      stat = path.stat()
      key = str(path.resolve())
      stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
      known = None if fresh else (_memo.get(key) or disk.get(key))
      if known is not None and all(known.get(k) == v for k, v in stamp.items()):
        digest = known["sha256"]
      else:
        digest = _file_sha256(path)
        changed = True
      entry = {**stamp, "sha256": digest}
      _memo[key] = entry
      if disk.get(key) != entry:
        disk[key] = entry
        changed = True
      digests.append(digest)
    if changed:
      if fresh:  # keep what other sources remembered
        disk = {**_load_memo(cache_dir), **{str(p.resolve()): _memo[str(p.resolve())]
                                           for p in paths}}
      _save_memo(cache_dir, disk)
  return digests


def source_digest(source: Path, cache_dir: Path, members: Iterable[str] | None = None) -> str:
  """One sha256 over the content of ``source``: a file, or the files of a folder.

  Args:
    source: an archive file or a folder.
    cache_dir: where the per-file memo lives.
    members: for a folder, the relative paths (under ``source``) that matter, in order; every
      file below it when ``None``.

  Returns:
    A hex digest that changes whenever a byte of a file that matters changes (or one is renamed,
    added or removed).
  """
  source = Path(source)
  if source.is_file():
    return file_digests([source], cache_dir)[0]
  if members is None:
    members = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
  members = list(members)
  combined = hashlib.sha256()
  for name, digest in zip(members, file_digests([source / m for m in members], cache_dir)):
    combined.update(f"{name}\0{digest}\n".encode())
  return combined.hexdigest()


def cache_is_current(cached: dict | None, digest: str, cache: Path) -> bool:
  """Whether ``cached`` (from ``_io.load_arrays``) was made from ``digest``; logs a rebuild."""
  if cached is None:
    logger.info("building the cache %s (none yet)", cache)
    return False
  stored = str(cached.get("source", ""))
  if stored == digest:
    return True
  logger.warning("rebuilding the cache %s: its source changed (content digest %s, the cache was "
                 "made from %s)", cache, digest[:12], stored[:12] or "an older metajax")
  return False
