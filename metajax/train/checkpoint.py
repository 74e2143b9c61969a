"""Checkpoints of a :class:`metajax.MetaTrainState` with orbax: the last N plus the best.

Each checkpoint ``<run>/checkpoints/<step>/`` holds two items: ``state`` (the train state, orbax
``StandardSave``) and ``meta`` (JSON: the step, the validation accuracy if measured, and a sha256
digest of every array of the state). Orbax writes into a temporary folder and renames it when
complete, so a run killed at any moment (even by SIGKILL) leaves only whole checkpoints; the
digest catches what the rename cannot: bytes truncated or changed afterwards. Restoring tries the
newest checkpoint first and falls back to the previous one when a checkpoint cannot be read or
its digest differs, reporting which one was skipped and why.

Saving is synchronous: Conv-4 states are a few MB, and a save that has returned is on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as ocp_policy

from metajax.core.meta_step import MetaTrainState

VAL_METRIC = "val_accuracy"


class CheckpointError(RuntimeError):
  """No checkpoint of a run could be restored.

  Raised by ``Checkpointer.restore`` when a checkpoint is unreadable or its arrays do not match
  the sha256 digest saved with them, and by :func:`metajax.train.train` (resuming) and
  :func:`metajax.train.load_run` when a run's checkpoints exist but none can be restored. The
  message names the checkpoint directory.
  """


def state_digest(state: Any) -> str:
  """sha256 over the shapes, dtypes and bytes of every leaf of ``state``."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_data(0)  # replicated over several processes: this one's copy
    array = np.asarray(jax.device_get(leaf))
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


class Checkpointer:
  """Saves and restores train states in ``directory``, keeping the latest ``keep`` and the best.

  Args:
    directory: the checkpoint folder (created if missing).
    keep: latest checkpoints to keep; the one with the best validation accuracy is kept as well.

  Example:
    >>> ckpt = Checkpointer("/tmp/run/checkpoints", keep=3)  # doctest: +SKIP
    >>> ckpt.save(100, state, val_accuracy=0.9)  # doctest: +SKIP
    >>> state, step, skipped = ckpt.restore_latest(template)  # doctest: +SKIP
  """

  def __init__(self, directory: str | Path, *, keep: int = 3):
    self.directory = Path(directory).absolute()
    policy = ocp_policy.AnyPreservationPolicy([
        ocp_policy.LatestN(keep),
        ocp_policy.BestN(get_metric_fn=lambda metrics: metrics[VAL_METRIC], reverse=False, n=1,
                         keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, enable_async_checkpointing=False, create=True,
        cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "meta"))

  def steps(self) -> list[int]:
    """Steps with a finished checkpoint, oldest first."""
    self.manager.reload()
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: MetaTrainState, *, val_accuracy: float | None = None) -> None:
    """Writes the checkpoint of ``step`` (replacing an existing one of the same step)."""
    meta = {"step": int(step), "digest": state_digest(state)}
    if val_accuracy is not None:
      meta[VAL_METRIC] = float(val_accuracy)
    if step in self.manager.all_steps():
      self.manager.delete(step)
    self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(_as_dict(state)),
                                meta=ocp.args.JsonSave(meta)),
        metrics=None if val_accuracy is None else {VAL_METRIC: float(val_accuracy)},
        force=True)
    self.manager.wait_until_finished()

  def meta(self, step: int) -> dict:
    """The JSON item of a checkpoint (step, digest, validation accuracy)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"])

  def restore(self, step: int, template: MetaTrainState) -> MetaTrainState:
    """Restores the state of ``step``, checking its digest.

    Args:
      step: a saved step.
      template: a state of the same structure (e.g. the freshly initialised one).

    Raises:
      CheckpointError: naming the checkpoint when it cannot be read or its digest differs.
    """
    path = self.directory / str(step)
    try:
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _as_dict(template))
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as error:  # orbax/tensorstore raise many types for damaged files
      raise CheckpointError(f"checkpoint {path} is unreadable ({type(error).__name__}: "
                            f"{_first_line(error)})") from error
    state = _from_dict(restored["state"], template)
    expected = restored["meta"].get("digest")
    if expected != state_digest(state):
      raise CheckpointError(f"checkpoint {path} is corrupted: its arrays do not match the sha256 "
                            "digest written with them")
    return state

  def restore_latest(self, template: MetaTrainState, *, report: Callable[[str], None] | None = None
                     ) -> tuple[MetaTrainState | None, int | None, list[str]]:
    """Restores the newest good checkpoint, skipping damaged ones.

    Args:
      template: a state of the same structure.
      report: called with a message for every checkpoint skipped.

    Returns:
      ``(state, step, problems)``; ``(None, None, problems)`` when there is no good checkpoint.
    """
    problems = []
    steps = self.steps()
    for i, step in enumerate(reversed(steps)):
      try:
        return self.restore(step, template), step, problems
      except CheckpointError as error:
        older = steps[len(steps) - 2 - i] if i + 1 < len(steps) else None
        message = f"{error}; " + (f"using the previous checkpoint (step {older})"
                                  if older is not None else "no earlier checkpoint is left")
        problems.append(message)
        if report is not None:
          report(message)
    return None, None, problems

  def best_step(self) -> int | None:
    """The step with the highest validation accuracy, or ``None``.

    Ties go to the newest step, the one orbax's best-1 preservation policy keeps (with
    ``keep`` below the number of validations an older tie is deleted).
    """
    best, best_accuracy = None, -np.inf
    for step in self.steps():
      try:
        accuracy = self.meta(step).get(VAL_METRIC)
      except Exception:  # a damaged checkpoint cannot be the best one
        continue
      if accuracy is not None and accuracy >= best_accuracy:
        best, best_accuracy = step, accuracy
    return best

  def choose(self, checkpoint: str | int) -> int:
    """The step of ``checkpoint``: ``"best"`` (highest validation accuracy; the newest when
    none was validated), ``"last"``, or a step number.

    Raises:
      CheckpointError: when the folder holds no checkpoint.
      ValueError: for a step that is not among the saved ones.
    """
    available = self.steps()
    if not available:
      raise CheckpointError(f"{self.directory} holds no checkpoint; train the run first "
                            "(metajax train ...)")
    if checkpoint == "best":
      return self.best_step() or available[-1]
    if checkpoint == "last":
      return available[-1]
    if checkpoint not in available:
      raise ValueError(f"no checkpoint of step {checkpoint} in {self.directory.parent}; "
                       f"available: {available}")
    return int(checkpoint)

  def close(self) -> None:
    self.manager.close()


def _as_dict(state: MetaTrainState) -> dict:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def _from_dict(values: dict, template: MetaTrainState) -> MetaTrainState:
  leaves = jax.tree.leaves(values["step"]), jax.tree.leaves(values["params"]), jax.tree.leaves(
      values["opt_state"])
  rebuild = lambda tree, new: jax.tree.unflatten(jax.tree.structure(tree), new)
  return MetaTrainState(rebuild(template.step, leaves[0]), rebuild(template.params, leaves[1]),
                        rebuild(template.opt_state, leaves[2]))


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0][:300] if text else ""
