"""Where the data and the converted-array cache live.

The data folder holds the original archives (``omniglot/images_background.zip``, ...). It is
``$METAJAX_DATA_DIR`` when set, else the first existing ``../shared/data`` relative to the current
working directory or to the repository root (the folder above the ``metajax`` package).
"""

from __future__ import annotations

import os
from pathlib import Path

_DATA_ENV = "METAJAX_DATA_DIR"
_CACHE_ENV = "METAJAX_CACHE_DIR"
_RELATIVE_DEFAULT = Path("..") / "shared" / "data"


def data_dir_candidates() -> list[Path]:
  """Returns the folders searched for data, in order of preference.

  Returns:
    ``[$METAJAX_DATA_DIR]`` when the variable is set (nothing else is searched then), else
    ``[cwd/../shared/data, repo_root/../shared/data]``.
  """
  env = os.environ.get(_DATA_ENV)
  if env:
    return [Path(env).expanduser()]
  repo_root = Path(__file__).resolve().parents[2]
  candidates = [Path.cwd() / _RELATIVE_DEFAULT, repo_root / _RELATIVE_DEFAULT]
  return list(dict.fromkeys(p.resolve() for p in candidates))


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
  """Returns the data folder, or raises naming every place searched.

  Args:
    data_dir: an explicit folder; overrides the search when given.

  Returns:
    An existing folder.

  Raises:
    FileNotFoundError: when no candidate folder exists.

  Example:
    >>> root = data_dir()  # doctest: +SKIP
    >>> (root / "omniglot" / "images_background.zip").exists()  # doctest: +SKIP
    True
  """
  candidates = [Path(data_dir).expanduser()] if data_dir is not None else data_dir_candidates()
  for candidate in candidates:
    if candidate.is_dir():
      return candidate
  searched = ", ".join(str(c) for c in candidates)
  raise FileNotFoundError(
    f"metajax data folder not found; looked in: {searched}. Set {_DATA_ENV}=/path/to/data, or "
    "fetch Omniglot with metajax.data.download_omniglot('/path/to/data/omniglot') and set "
    f"{_DATA_ENV}=/path/to/data."
  )


def cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """Returns (and creates) the folder for converted arrays.

  Args:
    cache_dir: an explicit folder; else ``$METAJAX_CACHE_DIR``, else ``~/.cache/metajax``.

  Returns:
    An existing folder.
  """
  if cache_dir is None:
    cache_dir = os.environ.get(_CACHE_ENV) or Path.home() / ".cache" / "metajax"
  path = Path(cache_dir).expanduser()
  path.mkdir(parents=True, exist_ok=True)
  return path
