"""Metrics as JSON lines in the run folder (and TensorBoard with the ``tensorboard`` extra).

Every line is one record, ``{"split": "train" | "val" | "test" | "adaptation", "step": n, ...}``.
Records hold only values that a resumed run reproduces bit for bit (no wall-clock times), so a
resumed run's file equals an uninterrupted run's. On resumption, records past the restored
checkpoint (and a half-written last line) are dropped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from metajax.train._atomic import write_text_atomically

FILENAME = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict]:
  """All complete records of a run, in order (a half-written last line is skipped)."""
  path = Path(run_dir) / FILENAME
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return records


def _plain(value: Any) -> Any:
  if hasattr(value, "item"):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no nan/inf; keep them readable
  return value


class MetricsLog:
  """Appends records to ``<run_dir>/metrics.jsonl``.

  Args:
    run_dir: the run folder.
    keep_until: on resumption, the restored step: records with a larger ``step`` are dropped
      (``None`` starts a new file).
    tensorboard: also write scalars to ``<run_dir>/tensorboard`` with ``tensorboardX``, the
      declared extra (``pip install "metajax[tensorboard]"``); skipped when it is not installed.
  """

  def __init__(self, run_dir: str | Path, *, keep_until: int | None = None,
               tensorboard: bool = True):
    self.path = Path(run_dir) / FILENAME
    kept = [] if keep_until is None else [
        r for r in read_metrics(run_dir) if r.get("split") in ("train", "val")
        and r.get("step", 0) <= keep_until]
    write_text_atomically(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    self._file = self.path.open("a")
    self._writer = _tensorboard_writer(Path(run_dir) / "tensorboard") if tensorboard else None

  def write(self, record: dict) -> None:
    record = {k: _plain(v) for k, v in record.items()}
    self._file.write(json.dumps(record) + "\n")
    if self._writer is not None:
      step = record.get("step", 0)
      for key, value in record.items():
        if key not in ("step", "split") and isinstance(value, int | float):
          self._writer.add_scalar(f"{record.get('split', 'metrics')}/{key}", value, step)

  def flush(self) -> None:
    self._file.flush()
    os.fsync(self._file.fileno())
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    self.flush()
    self._file.close()
    if self._writer is not None:
      self._writer.close()


def _tensorboard_writer(directory: Path):
  # Only the declared extra: a torch or tensorboard that happens to be installed is not used.
  if importlib.util.find_spec("tensorboardX") is None:
    return None
  from tensorboardX import SummaryWriter

  return SummaryWriter(str(directory))
