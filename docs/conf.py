"""Sphinx configuration of the metajax documentation.

Sphinx + MyST-NB, as JAX, Flax and optax use: Markdown pages, notebooks rendered as tutorials and
an API reference generated from the docstrings (autodoc + napoleon for the Google style). Build:

    pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html

Two pages are generated here at build time, so they cannot go stale:

* ``api/*.md``: one page per public module, listing every public name it exports (the names
  :func:`public_names` finds), each documented from its docstring;
* ``tutorials/*.ipynb``: the notebooks of ``notebooks/``. When ``METAJAX_EXECUTED_NOTEBOOKS``
  names a folder of executed copies (``tests/test_notebooks.py`` writes them there in CI), those
  are rendered with their outputs; ``METAJAX_DOCS_REQUIRE_EXECUTED=1`` makes a missing copy an
  error. Otherwise the committed (output-free) notebooks are rendered.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(ROOT))

from _public import public_modules, public_names  # noqa: E402

project = "metajax"
author = "the metajax authors"
copyright = "2026, the metajax authors"  # noqa: A001

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md", "_public.py"]
html_theme = "sphinx_book_theme"
html_title = "metajax"
html_theme_options = {"show_toc_level": 2}
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}

# Broken cross-references fail the build (with -W). Types from other libraries (jax, optax,
# numpy, typing) have no inventory offline, so only metajax's own references are checked.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!metajax\b).*"),
                        (r"py:.*", r"metajax\..*\.(Array|PyTree|PRNGKey|Metrics)")]


def _write_api_pages() -> None:
  api = DOCS / "api"
  api.mkdir(exist_ok=True)
  index = ["# API reference", "",
           "Every public name of metajax, generated from its docstring. Public means exported by",
           "one of the modules below without a leading underscore.", "", "```{toctree}",
           ":maxdepth: 1", ""]
  for module in public_modules():
    page = module.replace(".", "_")
    index.append(page)
    lines = [f"# `{module}`", "", "```{eval-rst}", f".. module:: {module}", ""]
    mod = __import__(module, fromlist=["_"])
    if mod.__doc__:
      lines += [mod.__doc__.strip().splitlines()[0], ""]
    for name, kind in public_names(module):
      directive = "autoclass" if kind == "class" else "autofunction"
      options = ["   :members:"] if kind == "class" and module == "metajax" else []
      lines += [f".. {directive}:: {module}.{name}", *options, ""]
    lines.append("```")
    (api / f"{page}.md").write_text("\n".join(lines) + "\n")
  index.append("```")
  (api / "index.md").write_text("\n".join(index) + "\n")


def _copy_notebooks() -> None:
  target = DOCS / "tutorials"
  target.mkdir(exist_ok=True)
  executed = os.environ.get("METAJAX_EXECUTED_NOTEBOOKS")
  require = os.environ.get("METAJAX_DOCS_REQUIRE_EXECUTED") == "1"
  for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
    copy = Path(executed) / source.name if executed else None
    if copy is not None and copy.exists():
      shutil.copyfile(copy, target / source.name)
    elif require:
      raise RuntimeError(
          f"METAJAX_DOCS_REQUIRE_EXECUTED=1 but no executed copy of {source.name} in "
          f"{executed!r}; run tests/test_notebooks.py with METAJAX_EXECUTED_NOTEBOOKS set first")
    else:
      shutil.copyfile(source, target / source.name)


_write_api_pages()
_copy_notebooks()
