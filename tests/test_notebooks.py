"""The notebooks in ``notebooks/`` run top to bottom, and are committed without outputs.

Each notebook runs in a fresh ``python3`` kernel of *this* interpreter (ipykernel's built-in
kernel spec, so a ``python3`` kernel registered elsewhere on the machine is never picked up), with
``METAJAX_NOTEBOOK_BUDGET=ci``: every notebook reads its step counts from that variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from traitlets import default  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# Seconds per cell: ci budgets take ~1-3 minutes a notebook on a loaded 2-core CPU.
CELL_TIMEOUT_S = int(os.environ.get("METAJAX_NOTEBOOK_CELL_TIMEOUT", "600"))


class ThisPythonKernelManager(KernelManager):
  """Resolves ``python3`` to ipykernel's native spec: this interpreter (``sys.executable``).

  With no kernel directories, :class:`KernelSpecManager` falls back to ipykernel's built-in
  spec, so a ``python3`` kernel registered for another interpreter is never used.
  """

  @default("kernel_spec_manager")
  def _kernel_spec_manager_default(self):
    return KernelSpecManager(kernel_dirs=[], parent=self)


def test_notebooks_exist():
  assert [p.name for p in NOTEBOOKS] == [
      "01_quickstart.ipynb", "02_omniglot.ipynb", "03_custom_algorithm.ipynb",
      "04_benchmarks.ipynb", "05_meta_rl.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  stale = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
           and (cell.get("outputs") or cell.get("execution_count") is not None)]
  assert not stale, (
      f"{path.name}: code cells {stale} have outputs or execution counts; strip them before "
      "committing (e.g. `jupyter nbconvert --clear-output --inplace " f"notebooks/{path.name}`).")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, request):
  notebook = nbformat.read(path, as_version=4)
  if any("load_omniglot" in cell.source for cell in notebook.cells):
    request.getfixturevalue("omniglot_root")  # skips, naming the download, without data
  # The client owns its kernel manager, so it shuts the kernel down and closes every socket.
  client = nbclient.NotebookClient(
      notebook, kernel_name="python3", kernel_manager_class=ThisPythonKernelManager,
      timeout=CELL_TIMEOUT_S, allow_errors=False,
      resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
  env = {**os.environ, "METAJAX_NOTEBOOK_BUDGET": "ci"}
  client.execute(env=env)   # raises CellExecutionError on the first failing cell
  # The docs build renders these executed copies as tutorials (docs/conf.py), so CI runs each
  # notebook once.
  executed = os.environ.get("METAJAX_EXECUTED_NOTEBOOKS")
  if executed:
    Path(executed).mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, Path(executed) / path.name)
