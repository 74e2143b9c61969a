"""Checks a built HTML docs tree: every public name of metajax has its entry in the API reference.

Usage: ``python docs/check_build.py docs/_build/html`` (after ``sphinx-build``); exits 1 naming
the missing names. CI runs it after building the docs with warnings as errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _public import public_modules, public_names  # noqa: E402


def main(html: str) -> int:
  api = Path(html) / "api"
  missing, count = [], 0
  for module in public_modules():
    page = api / f"{module.replace('.', '_')}.html"
    text = page.read_text() if page.exists() else ""
    for name, _ in public_names(module):
      count += 1
      if f'id="{module}.{name}"' not in text:
        missing.append(f"{module}.{name}")
  if missing:
    print(f"docs: {len(missing)} public names have no API entry: {', '.join(missing)}")
    return 1
  print(f"docs: all {count} public names of {len(public_modules())} modules are in the API "
        "reference")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html"))
