"""The public API of metajax: the names the API reference documents and the docstring test checks.

A public name is one a public module exports without a leading underscore: a function or class
defined in metajax and re-exported by the module's ``__init__`` (``from x import y as y``).
"""

from __future__ import annotations

import importlib
import inspect

PUBLIC_MODULES = ("metajax", "metajax.algorithms", "metajax.models", "metajax.data",
                  "metajax.train", "metajax.testing")
OPTIONAL_MODULES = ("metajax.envs",)


def public_modules() -> tuple[str, ...]:
  """``PUBLIC_MODULES`` plus the optional ones that exist in this checkout."""
  extra = []
  for name in OPTIONAL_MODULES:
    try:
      importlib.import_module(name)
    except ModuleNotFoundError:
      continue
    extra.append(name)
  return PUBLIC_MODULES + tuple(extra)


def public_names(module: str) -> list[tuple[str, str]]:
  """``[(name, "class" | "function")]`` that ``module`` exports, in source order of the module."""
  mod = importlib.import_module(module)
  found = []
  for name, value in vars(mod).items():
    if name.startswith("_") or inspect.ismodule(value):
      continue
    if not (inspect.isclass(value) or inspect.isfunction(value)):
      continue
    if not getattr(value, "__module__", "").startswith("metajax"):
      continue
    if module == "metajax" or not _also_top_level(name, value):
      found.append((name, "class" if inspect.isclass(value) else "function"))
  return found


def _also_top_level(name: str, value) -> bool:
  """Names documented under ``metajax`` are not repeated under a submodule."""
  import metajax

  return getattr(metajax, name, None) is value
