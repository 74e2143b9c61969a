"""Where the data and the converted-array cache live.

The data folder holds the original archives (``omniglot/images_background.zip``, ...). It is
``$METAJAX_DATA_DIR`` when set, else ``~/metajax_data`` (:data:`DEFAULT_DATA_DIR`), the folder
that ``metajax data download omniglot`` fills. The converted-array cache is ``$METAJAX_CACHE_DIR``,
else ``~/.cache/metajax``.
"""

from __future__ import annotations

import os
from pathlib import Path

_DATA_ENV = "METAJAX_DATA_DIR"
_CACHE_ENV = "METAJAX_CACHE_DIR"
# A visible folder in the home directory, as ~/tensorflow_datasets: users look for it.
DEFAULT_DATA_DIR = Path("~") / "metajax_data"
DOWNLOAD_HINT = "metajax data download omniglot"


def default_data_dir() -> Path:
  """Returns the data folder used when none is given (it may not exist yet).

  Returns:
    ``$METAJAX_DATA_DIR`` when set and not empty, else ``~/metajax_data``.
  """
  return Path(os.environ.get(_DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def data_dir_candidates() -> list[Path]:
  """Returns the folders searched for data, in order of preference.

  Returns:
    ``[default_data_dir()]``: one folder, ``$METAJAX_DATA_DIR`` or ``~/metajax_data``.
  """
  return [default_data_dir()]


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
    f"metajax data folder not found; looked in: {searched}. Fetch Omniglot into it with "
    f"'{DOWNLOAD_HINT}' (or metajax.data.download_omniglot('{searched}/omniglot')), or set "
    f"{_DATA_ENV}=/path/to/data where the archives already are"
  )


def cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  """Returns (and creates) the folder for converted arrays.

  Args:
    cache_dir: an explicit folder; else ``$METAJAX_CACHE_DIR``, else ``~/.cache/metajax``.

  Returns:
    An existing folder.

  Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "metajax-cache"
    >>> cache_dir(folder) == folder and folder.is_dir()
    True
  """
  if cache_dir is None:
    cache_dir = os.environ.get(_CACHE_ENV) or Path.home() / ".cache" / "metajax"
  path = Path(cache_dir).expanduser()
  path.mkdir(parents=True, exist_ok=True)
  return path
