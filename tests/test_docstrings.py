"""Every public name has a docstring a reader can use, and every docstring example runs.

Public names are those the API reference documents (``docs/_public.py``): functions and classes
that ``metajax``, ``metajax.algorithms``, ``metajax.models``, ``metajax.data``, ``metajax.train``,
``metajax.testing`` (and ``metajax.envs`` where present) export without a leading underscore.

A function needs ``Args:`` (when it takes parameters) and ``Returns:``/``Yields:``/``Raises:``; a
class needs ``Attributes:`` or ``Args:``; both need ``Example:`` or ``References:``. An exception
class (a subclass of ``Exception``) needs only a docstring that says when it is raised: it has no
arguments or attributes of its own beyond the message, and no paper to cite.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
from _public import public_modules, public_names  # noqa: E402

PUBLIC = [(module, name) for module in public_modules() for name, _ in public_names(module)]


def _sections(doc: str) -> set[str]:
  return {m.group(1) for m in re.finditer(r"^\s*(\w+):\s*$", doc, flags=re.MULTILINE)}


def _object(module: str, name: str):
  return getattr(importlib.import_module(module), name)


def test_the_public_api_is_not_empty():
  names = {name for _, name in PUBLIC}
  assert {"maml", "protonet", "make_meta_step", "load_omniglot", "conv4_model", "train"} <= names


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_docstring_has_args_returns_and_example_or_references(module, name):
  obj = _object(module, name)
  doc = inspect.getdoc(obj) or ""
  assert doc.strip(), f"{module}.{name} has no docstring"
  if inspect.isclass(obj) and issubclass(obj, Exception):
    assert re.search(r"\braised\b", doc, flags=re.IGNORECASE), (
        f"{module}.{name}: an exception's docstring must say when it is raised")
    return
  sections = _sections(doc)
  if inspect.isclass(obj):
    needed_one_of = {"Attributes", "Args"}
  else:
    needed_one_of = {"Returns", "Yields", "Raises"}
    params = [p for p in inspect.signature(obj).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if params:
      assert "Args" in sections, f"{module}.{name}: no 'Args:' section (sections: {sections})"
  assert sections & needed_one_of, (
      f"{module}.{name}: needs one of {sorted(needed_one_of)} (sections: {sorted(sections)})")
  assert sections & {"Example", "Examples", "References"}, (
      f"{module}.{name}: needs an 'Example:' or 'References:' section (sections: "
      f"{sorted(sections)})")


def _doctests():
  finder = doctest.DocTestFinder(exclude_empty=True)
  found = []
  for module, name in PUBLIC:
    obj = _object(module, name)
    home = importlib.import_module(obj.__module__)   # the defining module's names, as doctest does
    for test in finder.find(obj, f"{module}.{name}", globs=dict(vars(home))):
      if test.examples:
        found.append(test)
  return found


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example_runs(test):
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  runner.run(test, out=lambda s: None)
  failures = runner.summarize(verbose=False).failed
  assert failures == 0, f"{test.name}: {failures} docstring example(s) failed; run it with doctest"
