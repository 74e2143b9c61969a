"""Data fixtures: the real archives in ../shared/data, converted once per session.

Converted arrays go to the default cache (``$METAJAX_CACHE_DIR`` or ``~/.cache/metajax``), so a
warm cache makes the data tests fast; tests of the conversion itself use ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metajax.data import _paths


@pytest.fixture(scope="session")
def data_root() -> Path:
  try:
    return _paths.data_dir()
  except FileNotFoundError as err:
    pytest.skip(f"real data not available: {err}")


@pytest.fixture(scope="session")
def omniglot_root(data_root: Path) -> Path:
  root = data_root / "omniglot"
  if not (root / "images_background.zip").exists():
    pytest.skip(f"Omniglot archives not found in {root}")
  return root


@pytest.fixture(scope="session")
def omniglot_splits(omniglot_root: Path) -> dict:
  from metajax.data import load_omniglot

  return {split: load_omniglot(split) for split in ("train", "val", "test", "trainval")}
