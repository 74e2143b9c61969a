"""Small run-folder files written atomically (a reader sees the old text or the new, never half)."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
  """Writes ``text`` to ``path.tmp`` beside ``path``, then renames it over ``path``."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
