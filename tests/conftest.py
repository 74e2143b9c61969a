"""Test configuration: where the real data is, and data fixtures converted once per session.

The library looks for data in ``$METAJAX_DATA_DIR``, else ``~/metajax_data``. This project's
checkouts keep the archives next to the repository, in ``../shared/data``: when
``METAJAX_DATA_DIR`` is not set and that folder exists, the tests (and the subprocesses and
notebook kernels they start) use it. With no data at all, every test that needs it is skipped
with a reason naming ``metajax data download omniglot``, and the rest run.

Converted arrays go to the default cache (``$METAJAX_CACHE_DIR`` or ``~/.cache/metajax``), so a
warm cache makes the data tests fast; tests of the conversion itself use ``tmp_path``.

``metajax train`` and ``metajax.train.train`` turn on JAX's persistent compilation cache in
``$METAJAX_CACHE_DIR/jax``; the suite sets ``METAJAX_COMPILATION_CACHE=0`` (unless set), so its
results never depend on what a user's cache holds. The tests that want a compilation cache set
their own folder (``JAX_COMPILATION_CACHE_DIR``), and ``tests/test_compile_cache.py`` tests the
cache in temporary folders.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import jax
import pytest

from metajax.data import _paths

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if not os.environ.get("METAJAX_DATA_DIR") and SHARED_DATA.is_dir():
  os.environ["METAJAX_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("METAJAX_COMPILATION_CACHE", "0")  # also for subprocesses and notebooks

NO_DATA = ("real data not available ({what}); fetch Omniglot with "
           f"'{_paths.DOWNLOAD_HINT}' (into $METAJAX_DATA_DIR, else ~/metajax_data)")



@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
  """Drops JAX's in-memory compiled programs after each test module.

  Each XLA:CPU executable holds ~6 memory maps, and the suite compiles thousands in one
  process: at Linux's default limit of 65,530 maps XLA segfaults (CI, 2026-11-30, loading an
  executable 96% of the way through; 63,292 maps measured there locally). Module-level jitted
  functions of the tests kept theirs until the end; this keeps one module's at a time.
  """
  yield
  jax.clear_caches()
  gc.collect()

def omniglot_available() -> bool:
  """Whether the Omniglot archives and the Vinyals split files are in the data folder."""
  root = _paths.default_data_dir() / "omniglot"
  return ((root / "images_background.zip").exists() or (root / "images_background").is_dir()) \
      and (root / "splits" / "vinyals" / "test.txt").is_file()


@pytest.fixture(scope="session")
def data_root() -> Path:
  try:
    return _paths.data_dir()
  except FileNotFoundError as err:
    pytest.skip(NO_DATA.format(what=err))


@pytest.fixture(scope="session")
def omniglot_root(data_root: Path) -> Path:
  root = data_root / "omniglot"
  if not omniglot_available():
    pytest.skip(NO_DATA.format(what=f"no Omniglot archives or Vinyals splits in {root}"))
  return root


@pytest.fixture(scope="session")
def omniglot_splits(omniglot_root: Path) -> dict:
  from metajax.data import load_omniglot

  return {split: load_omniglot(split) for split in ("train", "val", "test", "trainval")}
