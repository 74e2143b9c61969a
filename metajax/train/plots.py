"""PNG plots of a run: learning curves and accuracy against test-time adaptation steps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
  import matplotlib

  matplotlib.use("Agg", force=True)
  import matplotlib.pyplot as plt

  return plt


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
  if len(values) < window or window <= 1:
    return values
  kernel = np.ones(window) / window
  return np.convolve(values, kernel, mode="valid")


def learning_curves(records: Sequence[dict], path: str | Path, *, title: str = "",
                    train_ways: int | None = None, val_ways: int | None = None) -> Path:
  """Train loss and accuracy (smoothed) and validation accuracy against meta-steps.

  Args:
    records: metric records (see :mod:`metajax.train.metrics_log`).
    path: the PNG to write.
    title: figure title.
    train_ways: classes per training episode, named in the legend (e.g. ProtoNet trains 60-way
      and validates 5-way: its training accuracy is not comparable with the validation's).
    val_ways: classes per validation episode, likewise.

  Returns:
    ``path``.
  """
  plt = _pyplot()
  train = [r for r in records if r.get("split") == "train"]
  val = [r for r in records if r.get("split") == "val"]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  window = max(1, len(train) // 50)
  if train:
    steps = np.array([r["step"] for r in train])
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
      values = np.array([float(r.get(key, np.nan)) for r in train])
      smooth = _smooth(values, window)
      ax.plot(steps[len(steps) - len(smooth):], smooth, label=f"train {key}{_ways(train_ways)}")
  if val:
    ax_acc.errorbar([r["step"] for r in val], [r["accuracy"] for r in val],
                    yerr=[r.get("accuracy_ci95", 0.0) for r in val], marker="o", ms=3,
                    label=f"validation accuracy{_ways(val_ways)}")
  ax_loss.set(xlabel="meta-step", ylabel="query loss", yscale="log")
  ax_acc.set(xlabel="meta-step", ylabel="query accuracy")
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return Path(path)


def _ways(ways: int | None) -> str:
  return "" if ways is None else f" ({ways}-way episodes)"


def adaptation_curve(steps: Sequence[int], accuracy: Sequence[float], ci95: Sequence[float],
                     path: str | Path, *, train_steps: int | None = None,
                     title: str = "") -> Path:
  """Test accuracy (mean ± 95% CI) against the number of test-time inner steps.

  Args:
    steps: numbers of inner steps.
    accuracy: mean accuracy for each.
    ci95: 95% confidence half-widths.
    path: the PNG to write.
    train_steps: inner steps used in meta-training (drawn as a vertical line).
    title: figure title.

  Returns:
    ``path``.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.errorbar(steps, accuracy, yerr=ci95, marker="o", capsize=3)
  if train_steps is not None:
    ax.axvline(train_steps, color="gray", ls="--", label=f"training inner steps ({train_steps})")
    ax.legend()
  ax.set(xlabel="test-time inner steps", ylabel="test accuracy")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return Path(path)
