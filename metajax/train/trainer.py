"""Episodic meta-training of a few-shot classifier from a :class:`~metajax.train.config.Config`.

The loop is one compiled :func:`metajax.make_meta_step` over a :class:`metajax.MetaTrainState`
(donated). All randomness derives from ``config.seed``: the model from ``fold_in(seed, 0)``, the
training episodes of step ``s`` from ``fold_in(fold_in(seed, 1), s)``, the meta-step's key from
``fold_in(fold_in(seed, 2), s)``, validation and test episodes from fixed keys. There is no other
RNG state, so a run resumed from the checkpoint of step ``s`` repeats exactly what an
uninterrupted run does after step ``s``.

Every ``eval_every`` steps the trainer validates on ``eval_episodes`` episodes of the validation
split (always the same episodes) and saves a checkpoint; the checkpoint with the best validation
accuracy is tested at the end on ``test_episodes`` episodes of the test split (mean and 95%
confidence interval ``1.96 * std / sqrt(n)``, as the papers report). SIGINT and SIGTERM finish the
current step, save and return; SIGKILL loses at most the steps since the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from metajax.core.meta_learner import MetaLearner
from metajax.core.meta_step import MetaTrainState, evaluate_tasks, init_meta_state
from metajax.data.sampler import EpisodeSampler, episode_sampler
from metajax.train import distributed, metrics_log, plots, registry, run_lock
from metajax.train._atomic import write_text_atomically
from metajax.train._compile_cache import enable_compilation_cache
from metajax.train.checkpoint import Checkpointer, CheckpointError
from metajax.train.config import RESUME_MUTABLE, Config, validate
from metajax.train.runs import read_run_config

Report = Callable[[str], None]

# Sub-keys of the seed key (fold_in indices); changing them changes every run.
_MODEL, _TRAIN_EPISODES, _STEP, _VAL, _TEST = range(5)


class NonFiniteError(RuntimeError):
  """A training metric became NaN or infinite; the run stopped without saving the bad state.

  Raised by :func:`metajax.train.train` (from its NaN guard, which checks the metrics each time it
  logs them) when the loss or gradient norm is NaN/inf, when a task batch holds NaN/inf inputs, or
  when an update made the parameters non-finite. The message names the step range and the last
  good checkpoint.
  """


class TrainResult(NamedTuple):
  """What :func:`train` did.

  Attributes:
    run_dir: the run folder.
    step: meta-steps done (including those of earlier, resumed calls).
    completed: reached ``meta_steps`` and was tested.
    stopped_by: ``"SIGINT"``, ``"SIGTERM"``, ``"interrupt"``, ``"time budget"`` or ``None``.
    resumed_from: the checkpoint step this call started from (``None``: a new run).
    best_step: the checkpoint with the best validation accuracy.
    best_val_accuracy: its accuracy.
    test: the test record (accuracy, accuracy_ci95, loss, episodes, inner_steps, step) or
      ``None`` when the run did not finish.
    seconds: wall-clock time of this call's training loop.
    skipped_checkpoints: messages about damaged checkpoints that were passed over.

  Example:
    >>> from metajax.train import load_config, train  # doctest: +SKIP
    >>> result = train(load_config("configs/protonet_omniglot.py:5w1s"))  # doctest: +SKIP
    >>> result.completed, result.test["accuracy"], result.test["accuracy_ci95"]  # doctest: +SKIP

  References:
    The test record follows the protocol of Ravi & Larochelle, "Optimization as a Model for
    Few-Shot Learning", ICLR 2017, and Finn, Abbeel & Levine, ICML 2017: mean accuracy over 600
    test episodes with a 95% confidence interval.
  """

  run_dir: Path
  step: int
  completed: bool
  stopped_by: str | None
  resumed_from: int | None
  best_step: int | None
  best_val_accuracy: float | None
  test: dict | None
  seconds: float
  skipped_checkpoints: list[str]


class _Setup(NamedTuple):
  learner: MetaLearner  # meta-training episodes (config.ways classes)
  eval_learner: MetaLearner  # validation and test episodes (config.eval_ways classes)
  optimizer: object
  template: MetaTrainState


def _keys(config: Config) -> dict[int, jax.Array]:
  root = jax.random.key(config.seed)
  return {i: jax.random.fold_in(root, i) for i in range(5)}


def _setup(config: Config) -> _Setup:
  learner = registry.build_learner(config, _keys(config)[_MODEL])
  eval_learner = (learner if config.eval_ways == config.ways else
                  registry.build_learner(config, _keys(config)[_MODEL], ways=config.eval_ways))
  optimizer = registry.build_optimizer(config)
  return _Setup(learner, eval_learner, optimizer, init_meta_state(learner, optimizer))


def _eval_sampler(config: Config, split: str) -> EpisodeSampler:
  return episode_sampler(registry.load_split(config, split), ways=config.eval_ways,
                         shots=config.eval_shots, queries=config.eval_queries,
                         batch_size=min(config.eval_batch, max(config.eval_episodes,
                                                               config.test_episodes)))


def evaluate_episodes(learner: MetaLearner, params, sampler: EpisodeSampler, key: jax.Array,
                      episodes: int, *, steps: int | None = None, batching: str = "auto",
                      layout: distributed.Layout | None = None) -> dict:
  """Mean accuracy and loss with 95% confidence half-widths over ``episodes`` episodes.

  Episode ``j`` is ``sampler.sample_at(key, ...)``'s episode of index ``j`` (drawn from
  ``fold_in(key, j)``) and is adapted with the key ``fold_in(fold_in(key, j), 1)``: a function of
  the key and ``j`` alone, so the same key gives the same episodes for every model and every
  ``sampler.batch_size`` (``eval_batch``).

  Args:
    learner: the algorithm.
    params: meta-parameters.
    sampler: episodes of the evaluation split.
    key: the base key of the episodes.
    episodes: how many (the last batch is cut to fit).
    steps: test-time inner steps (``None``: the learner's default).
    batching: ``"auto"``, ``"vmap"`` or ``"map"`` over the episodes of a batch (see
      :func:`metajax.evaluate_tasks`).
    layout: shard each batch's episodes over these devices and processes (the same episodes
      and results whatever the layout; see ``metajax.train.distributed.evaluate_batch``).

  Returns:
    ``{"accuracy", "accuracy_ci95", "loss", "loss_ci95", "episodes"}``.
  """
  per_task: dict[str, list[np.ndarray]] = {}
  batches = math.ceil(episodes / sampler.batch_size)
  for i in range(batches):
    if layout is not None and layout.mesh is not None:
      metrics = distributed.evaluate_batch(layout, learner, params, sampler, key,
                                           i * sampler.batch_size, steps=steps,
                                           batching=batching)
    else:
      first = i * sampler.batch_size
      tasks = sampler.sample_at(key, first)
      indices = jax.numpy.arange(first, first + sampler.batch_size)
      task_keys = jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(key, j), 1))(indices)
      metrics = evaluate_tasks(learner, params, tasks, task_keys, steps=steps, batching=batching)
    for name, values in metrics.items():
      per_task.setdefault(name, []).append(np.asarray(values, np.float64))
  result = {"episodes": episodes}
  for name in ("accuracy", "loss"):
    if name in per_task:
      values = np.concatenate(per_task[name])[:episodes]
      result[name] = float(values.mean())
      result[f"{name}_ci95"] = float(1.96 * values.std() / math.sqrt(len(values)))
  return result


class _StopFlag:
  """Turns SIGINT/SIGTERM into a request to stop after the current step (main thread only)."""

  def __init__(self, enabled: bool):
    self.reason: str | None = None
    self._previous = {}
    if enabled and threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.reason is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C forces the exit
    self.reason = signal.Signals(signum).name

  def check(self, step: int) -> str | None:
    """The stop reason, if a signal came (``step``: for :class:`distributed.SyncedStop`)."""
    del step
    return self.reason

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _check_resumable(config: Config, run_dir: Path) -> None:
  saved_path = run_dir / "config.json"
  if not saved_path.exists():
    return
  saved = json.loads(saved_path.read_text())
  current = dataclasses.asdict(config)
  changed = sorted(k for k in current if k not in RESUME_MUTABLE and saved.get(k) != current[k])
  if changed:
    details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
    raise ValueError(
        f"cannot resume {run_dir}: config key(s) {changed} differ from the run's config.json "
        f"({details}); use a new run_dir or the original values")


def _one_writer(train_fn: Callable) -> Callable:
  """Holds the run folder's lock (:class:`run_lock.RunLock`) while ``train_fn`` runs.

  The config is validated, its learner built and its devices laid out first, so a bad config,
  a value the algorithm's factory refuses (``algorithm_kwargs.inner_lr=-1``) or devices the
  run lacks fail before the folder is created. Only process 0 of a multi-process run takes the
  lock (the processes of one run share the folder).
  """

  @functools.wraps(train_fn)
  def locked(config: Config, **kwargs):
    enable_compilation_cache()  # a second run loads the compiled steps (METAJAX_COMPILATION_CACHE)
    config = validate(config)
    registry.build_learner(config, _keys(config)[_MODEL])
    distributed.device_layout(config.devices, config.mesh)  # devices this run lacks: no folder
    if jax.process_index() != 0:
      return train_fn(config, **kwargs)
    with run_lock.RunLock(config.run_dir, report=kwargs.get("report")):
      return train_fn(config, **kwargs)

  return locked


@_one_writer
def train(
    config: Config,
    *,
    resume: bool | None = None,
    progress: bool = False,
    report: Report | None = None,
    handle_signals: bool = True,
    interrupt_at: int | None = None,
) -> TrainResult:
  """Meta-trains, validates, checkpoints and finally tests ``config``'s learner.

  JAX's persistent compilation cache is turned on in ``$METAJAX_CACHE_DIR/jax`` (default
  ``~/.cache/metajax/jax``), so that a second run loads its compiled programs, unless a JAX cache
  folder is set already (``JAX_COMPILATION_CACHE_DIR``) or ``METAJAX_COMPILATION_CACHE=0``.

  Args:
    config: the experiment; validated before anything is loaded.
    resume: ``None`` resumes when ``run_dir`` has checkpoints, else starts a new run; ``True``
      requires checkpoints; ``False`` requires that there are none.
    progress: show a tqdm progress bar (steps/s, loss, accuracy, validation accuracy).
    report: called with messages for the user (resumption, skipped checkpoints, the end).
    handle_signals: turn SIGINT/SIGTERM into "save and stop" (main thread only).
    interrupt_at: behave as if interrupted after this step (for tests and scripted pauses).

  Returns:
    A :class:`TrainResult`.

  Raises:
    ValueError: for a bad config (before any work) or a run_dir that cannot be resumed.
    NonFiniteError: when the loss or gradient norm becomes NaN/inf; the message names the step
      range and the last good checkpoint, which is left as the newest one.
    CheckpointError: when checkpoints exist but none can be restored.

  Example:
    >>> from metajax.train import load_config, train  # doctest: +SKIP
    >>> result = train(load_config("configs/maml_omniglot.py:5w1s", ["meta_steps=100"]))
    ... # doctest: +SKIP

  References:
    Finn, Abbeel & Levine, ICML 2017 (episodic meta-training, test protocol); Snell et al.,
    NeurIPS 2017 (600 test episodes with 95% confidence intervals).
  """
  config = validate(config)
  layout = distributed.device_layout(config.devices, config.mesh)
  distributed.check_same_config(layout, config.to_json())
  distributed.check_batch(layout, config.meta_batch)
  say = (report if layout.primary else None) or (lambda message: None)
  run_dir = Path(config.run_dir)
  checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.keep_checkpoints)
  existing = checkpointer.steps()
  if resume is True and not existing:
    raise ValueError(f"--resume was asked but {run_dir / 'checkpoints'} holds no checkpoint")
  if resume is False and existing:
    raise ValueError(f"{run_dir} already holds checkpoints (steps {existing}); resume it or use "
                     "a new run_dir")
  if existing:
    _check_resumable(config, run_dir)

  setup = _setup(config)
  setup = setup._replace(template=distributed.replicate(layout, setup.template))
  keys = _keys(config)
  state, start, skipped = setup.template, 0, []
  if existing:
    restored, step, skipped = checkpointer.restore_latest(setup.template, report=say)
    if restored is None:
      raise CheckpointError(f"none of the checkpoints in {run_dir / 'checkpoints'} could be "
                            "restored:\n  " + "\n  ".join(skipped))
    state, start = restored, step
    say(f"resuming {run_dir} from the checkpoint of step {step}")
  else:
    say(f"starting fresh in {run_dir} at step 0 (no checkpoint to resume from"
        + ("; the metrics of an earlier, unfinished attempt there are discarded)"
           if (run_dir / metrics_log.FILENAME).exists() else ")"))
  # The data first: a missing dataset fails here, before the run folder's files are opened.
  train_data = registry.load_split(config, config.train_split)
  sampler = registry.train_sampler(config, train_data)
  val_sampler = _eval_sampler(config, config.val_split)
  if layout.primary:
    write_text_atomically(run_dir / "config.json", config.to_json())
  log = distributed.metrics_log(layout, run_dir, keep_until=start if existing else None)
  # "skip": a non-finite step leaves the state as it was (inside the compiled step, so donation
  # loses nothing); _flush then stops the run, naming whether the data or the update was at fault.
  meta_step = distributed.meta_step(layout, setup.learner, setup.optimizer,
                                    batching=config.batching, check_finite="skip")

  stop = (_StopFlag(handle_signals) if layout.process_count == 1
          else distributed.SyncedStop(handle_signals))
  bar = _progress_bar(config.meta_steps, start, progress and layout.primary)
  step, pending, last_checked = start, [], start
  best = _best_so_far(checkpointer)
  stopped_by = None
  began = last_saved = time.monotonic()
  try:
    batches = distributed.batches(layout, sampler, keys[_TRAIN_EPISODES], start=start)
    while step < config.meta_steps:
      tasks = next(batches)
      state, metrics = meta_step(state, tasks, jax.random.fold_in(keys[_STEP], step))
      step += 1
      pending.append((step, metrics))
      if interrupt_at is not None and step >= interrupt_at:
        stopped_by = "interrupt"
      stopped_by = stopped_by or stop.check(step)
      over_time = (config.time_budget_minutes is not None and distributed.agree_every(
          layout, time.monotonic() - began > 60 * config.time_budget_minutes,
          step % config.log_every == 0))
      if over_time and stopped_by is None:
        stopped_by = "time budget"
      validate_now = step % config.eval_every == 0 or step == config.meta_steps or over_time
      save_now = (not validate_now and config.checkpoint_every_minutes is not None
                  and distributed.agree_every(
                      layout, time.monotonic() - last_saved > 60 * config.checkpoint_every_minutes,
                      step % config.log_every == 0))
      if step % config.log_every == 0 or validate_now or stopped_by or save_now:
        last = _flush(pending, log, bar, last_checked, checkpointer)
        last_checked, pending = step, []
        if bar is not None and last:
          bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last.get('accuracy', 0):.3f}",
                          val="-" if best[1] is None else f"{best[1]:.3f}", refresh=False)
          _fit_bar_to_budget(bar, config, time.monotonic() - began, step)
      if validate_now:
        val = evaluate_episodes(setup.eval_learner, state.params, val_sampler, keys[_VAL],
                                config.eval_episodes, steps=config.test_inner_steps,
                                layout=layout)
        log.write({"split": "val", "step": step, **val})
        log.flush()
        checkpointer.save(step, state, val_accuracy=val["accuracy"])
        last_saved = time.monotonic()
        # Ties go to the newer step: the one the checkpointer's best-1 policy keeps.
        if best[1] is None or val["accuracy"] >= best[1]:
          best = (step, val["accuracy"])
      elif stopped_by or save_now:
        log.flush()
        checkpointer.save(step, state)
        last_saved = time.monotonic()
      if stopped_by:
        break
  finally:
    stop.restore()
    log.close()
    if bar is not None:
      bar.close()
  seconds = time.monotonic() - began
  if stopped_by is not None:
    say(f"stopped ({stopped_by}) after step {step}; checkpoint saved in {run_dir / 'checkpoints'}"
        f"; run the same command again (or metajax train ... --resume) to continue")
    if stopped_by != "time budget":
      checkpointer.close()
      return TrainResult(run_dir, step, False, stopped_by, start if existing else None, *best,
                         None, seconds, skipped)

  test = final_test(config, setup, checkpointer, state, step, progress=progress, report=say,
                    layout=layout)
  checkpointer.close()
  summary = {"step": step, "best_step": best[0], "best_val_accuracy": best[1], "test": test,
             "train_seconds_this_call": seconds, "stopped_by": stopped_by,
             "adaptation_plot": _adaptation_note(config)}
  if layout.primary:
    write_text_atomically(run_dir / "summary.json", json.dumps(summary, indent=2))
  return TrainResult(run_dir, step, stopped_by is None, stopped_by,
                     start if existing else None, *best, test, seconds, skipped)


def _best_so_far(checkpointer: Checkpointer) -> tuple[int | None, float | None]:
  step = checkpointer.best_step()
  if step is None:
    return None, None
  return step, checkpointer.meta(step)["val_accuracy"]


def _flush(pending, log: metrics_log.MetricsLog, bar, last_checked: int,
           checkpointer: Checkpointer) -> dict | None:
  """Fetches pending metrics, checks them for NaN/inf and writes them (the NaN guard)."""
  if not pending:
    return None
  fetched = jax.device_get([m for _, m in pending])
  first, last = pending[0][0], pending[-1][0]
  for (step, _), metrics in zip(pending, fetched):
    # Flags of make_meta_step(check_finite="skip"): checked here, not logged.
    finite_inputs = bool(metrics.pop("finite_inputs", True))
    finite_update = bool(metrics.pop("finite_update", True))
    if not finite_inputs:
      log.flush()
      raise NonFiniteError(
          f"the task batch of meta-step {step} holds NaN or infinite values (support/query "
          "inputs or targets); the step was not applied and the state was not saved. Check the "
          "dataset (or its augmentation) for NaN/inf")
    overflow = not finite_update and all(math.isfinite(float(metrics.get(q, 0.0)))
                                         for q in ("loss", "grad_norm"))
    if overflow:
      log.flush()
      raise NonFiniteError(
          f"the update of meta-step {step} made the parameters or the optimizer state non-finite "
          "(loss and gradient norm were finite); the step was not applied and the state was not "
          "saved. Lower learning_rate")
    for quantity in ("loss", "grad_norm"):
      value = float(metrics[quantity]) if quantity in metrics else 0.0
      if not math.isfinite(value):
        log.flush()
        good = checkpointer.steps()
        where = (f"the last good checkpoint is step {good[-1]} in {checkpointer.directory}"
                 if good else "no checkpoint was saved yet")
        raise NonFiniteError(
            f"{quantity} became {value} between meta-steps {last_checked + 1} and {last} (first "
            f"non-finite at step {step}); the state was not saved and {where}. Lower "
            "learning_rate or the inner step size, or check the data")
    log.write({"split": "train", "step": step, **{k: float(v) for k, v in metrics.items()}})
  if bar is not None:
    bar.update(last - first + 1)
  return {k: float(v) for k, v in fetched[-1].items()}


def final_test(config: Config, setup: _Setup, checkpointer: Checkpointer,
               state: MetaTrainState, step: int, *, progress: bool = False,
               report: Report | None = None, layout: distributed.Layout | None = None) -> dict:
  """Tests the best checkpoint (or ``state``), writes test records and the plots.

  With a multi-process ``layout`` every process tests its share and process 0 writes.
  """
  primary = layout is None or layout.primary
  say = report or (lambda message: None)
  params, chosen = state.params, step
  best = checkpointer.best_step()
  if best is not None and best != step:
    try:
      params, chosen = checkpointer.restore(best, setup.template).params, best
    except CheckpointError as error:
      say(f"{error}; testing the final state instead")
  run_dir = Path(config.run_dir)
  test_sampler = _eval_sampler(config, config.test_split)
  say(f"testing the checkpoint of step {chosen} on {config.test_episodes} episodes of "
      f"'{config.test_split}'")
  test = evaluate_episodes(setup.eval_learner, params, test_sampler, _keys(config)[_TEST],
                           config.test_episodes, steps=config.test_inner_steps, layout=layout)
  inner = config.test_inner_steps
  if inner is None and registry.ALGORITHMS[config.algorithm].gradient_based:
    inner = config.algorithm_kwargs.get("eval_steps", config.algorithm_kwargs.get("steps"))
  record = {"split": "test", "step": chosen, "inner_steps": inner, **test}
  if primary:
    _append(run_dir, [record])
    records = metrics_log.read_metrics(run_dir)
    plots.learning_curves(records, run_dir / "learning_curves.png", title=config.name,
                          train_ways=config.ways, val_ways=config.eval_ways)
    if not (config.adaptation_steps and registry.ALGORITHMS[config.algorithm].gradient_based):
      say(_adaptation_note(config))
  if config.adaptation_steps and registry.ALGORITHMS[config.algorithm].gradient_based:
    points = []
    for n in range(config.adaptation_steps + 1):
      result = evaluate_episodes(setup.eval_learner, params, test_sampler, _keys(config)[_TEST],
                                 config.adaptation_episodes, steps=n, layout=layout)
      points.append({"split": "adaptation", "step": chosen, "inner_steps": n, **result})
    if primary:
      _append(run_dir, points)
      plots.adaptation_curve([p["inner_steps"] for p in points], [p["accuracy"] for p in points],
                             [p["accuracy_ci95"] for p in points], run_dir / "adaptation.png",
                             train_steps=config.algorithm_kwargs.get("steps"),
                             title=config.name)
  return record


def _adaptation_note(config: Config) -> str:
  """What ``adaptation.png`` shows, or why the run has none."""
  if not registry.ALGORITHMS[config.algorithm].gradient_based:
    return (f"no adaptation.png: {config.algorithm} takes no test-time inner steps (it embeds "
            "the support set once), so there is no accuracy-against-steps curve; for accuracy "
            "at other shots or ways run 'metajax evaluate RUN_DIR --shots K --ways N'")
  if not config.adaptation_steps:
    return "no adaptation.png: adaptation_steps is 0 in the config"
  return (f"adaptation.png: test accuracy against 0-{config.adaptation_steps} test-time inner "
          f"steps ({config.adaptation_episodes} episodes)")


def _append(run_dir: Path, records: list[dict]) -> None:
  with (run_dir / metrics_log.FILENAME).open("a") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


def evaluate_run(run_dir: str | Path, *, episodes: int = 600, checkpoint: str | int = "best",
                 steps: int | None = None, split: str | None = None, ways: int | None = None,
                 shots: int | None = None, queries: int | None = None,
                 evaluator: str | None = None, evaluator_kwargs: dict | None = None,
                 devices: int | str | None = None, mesh: dict | None = None) -> dict:
  """Evaluates a saved run's checkpoint on its test split.

  The episodes can be sharded over several devices and processes (``devices``, ``mesh``, as the
  config keys of :func:`train`): episode ``j`` and its adaptation key depend on ``j`` alone, and
  a batch that does not split evenly over the devices is filled up with the next episodes, whose
  results are dropped, so every layout scores the same episodes and gives the one-device numbers
  up to float summation order (see ``metajax.train.distributed.evaluate_batch``).

  Args:
    run_dir: a run folder written by :func:`train`.
    episodes: test episodes.
    checkpoint: ``"best"`` (validation accuracy), ``"last"`` or a step.
    steps: test-time inner steps (``None``: the run's ``test_inner_steps``).
    split: the split (``None``: the run's ``test_split``).
    ways: test ways (``None``: the run's); metric learners take any, gradient-based learners
      only their head's.
    shots: test shots (``None``: the run's).
    queries: test queries per class (``None``: the run's); e.g. 1 for the protocol of MAML's
      reference code, which scores K queries per class.
    evaluator: score the run's embedding with this few-shot evaluator instead of the run's own
      learner: ``"linear_probe"``, ``"baseline"``, ``"baseline_plus_plus"`` or
      ``"nearest_centroid"`` (see ``metajax.algorithms.transfer``); any run whose
      parameters hold an ``"embedding"`` (metric learners, pretraining) works.
    evaluator_kwargs: that evaluator's keyword arguments, e.g. ``{"l2": 0.1}`` for the linear
      probe (``None``: a pretraining run's own ``evaluator_kwargs`` when ``evaluator`` is its
      evaluator, else the evaluator's defaults).
    devices: devices to evaluate on: ``"all"``, a number, or ``None`` (one device; all devices
      of a multi-process run). Not the run's ``devices``: the machine may differ from the one
      that trained.
    mesh: axis sizes of the device mesh (``None``: all devices on the ``"tasks"`` axis).

  Returns:
    ``{"accuracy", "accuracy_ci95", "loss", "loss_ci95", "episodes", "step", "split", "ways",
    "shots", "queries", "evaluator", "evaluator_kwargs", "devices", "episodes_digest"}``
    (``devices``: how many the episodes were sharded over; ``episodes_digest``: see
    :func:`episodes_digest`, equal for any two evaluations that scored the same episodes).

  Raises:
    ValueError: for a bad value, before anything is loaded or compiled; e.g. ``devices=8`` on a
      machine with 4 devices.

  Example:
    >>> record = evaluate_run("runs/protonet_omniglot_5w1s", episodes=600)  # doctest: +SKIP
    >>> probe = evaluate_run("runs/protonet_omniglot_5w1s", evaluator="linear_probe")
    ... # doctest: +SKIP

  References:
    Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017 (600 test
    episodes, 95% confidence intervals); Tian, Wang, Krishnan, Tenenbaum & Isola, "Rethinking
    Few-Shot Image Classification", ECCV 2020 (scoring an embedding with a linear probe).
  """
  checkpoint = _checkpoint_choice(checkpoint)
  for name, value, least in (("episodes", episodes, 1), ("steps", steps, 0), ("ways", ways, 2),
                             ("shots", shots, 1), ("queries", queries, 1)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < least):
      raise ValueError(f"{name} must be an integer >= {least}, got {value!r}; e.g. {name}="
                       f"{max(least, 5)}")
  if evaluator_kwargs is not None and evaluator is None:
    raise ValueError(f"evaluator_kwargs {evaluator_kwargs!r} need an evaluator; pass e.g. "
                     "evaluator='linear_probe' (--evaluator linear_probe)")
  distributed.check_layout_keys(devices, {} if mesh is None else mesh)
  layout = distributed.device_layout(devices, mesh)
  run_dir = Path(run_dir)
  config = read_run_config(run_dir)
  config = validate(config.replace(
      test_episodes=episodes, eval_batch=min(config.eval_batch, episodes),
      test_ways=config.test_ways if ways is None else ways,
      test_shots=config.test_shots if shots is None else shots,
      test_queries=config.test_queries if queries is None else queries))
  if evaluator is not None:
    evaluator_kwargs = registry.evaluator_kwargs_for_run(config, evaluator, evaluator_kwargs)
  distributed.check_same_config(layout, json.dumps(
      [config.to_json(), str(checkpoint), steps, split, evaluator, evaluator_kwargs, devices,
       mesh]))
  setup = _setup(config)
  checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.keep_checkpoints)
  try:
    chosen = checkpointer.choose(checkpoint)
    # Restored as train() saved it (replicated over the layout's devices, which a multi-process
    # restore needs); this process's copy is what the evaluation replicates per batch.
    template = distributed.replicate(layout, setup.template)
    params = distributed.to_local(checkpointer.restore(chosen, template).params)
  finally:
    checkpointer.close()
  learner = setup.eval_learner
  if evaluator is not None:
    learner, params = registry.evaluator_for_run(config, evaluator, params, _keys(config)[_MODEL],
                                                 evaluator_kwargs)
  split = split or config.test_split
  sampler = _eval_sampler(config, split)
  result = evaluate_episodes(learner, params, sampler, _keys(config)[_TEST], episodes,
                             steps=config.test_inner_steps if steps is None else steps,
                             layout=layout)
  return {**result, "step": chosen, "split": split, "ways": config.eval_ways,
          "shots": config.eval_shots, "queries": config.eval_queries,
          "evaluator": learner.name, "evaluator_kwargs": evaluator_kwargs,
          "devices": layout.shards,
          "episodes_digest": episodes_digest(sampler, _keys(config)[_TEST])}


def episodes_digest(sampler: EpisodeSampler, key: jax.Array) -> str:
  """A fingerprint of the episodes ``sampler`` draws from ``key``: equal digests, same episodes.

  Episode ``j`` is a function of the key, ``j``, the split's images and the episode shape alone
  (see :func:`evaluate_episodes`), so two evaluations whose episode 0 is bit-identical score the
  same episodes, whatever model, learner or ``eval_batch`` they use. The digest is the SHA-256 of
  episode 0's arrays (images, labels, masks), first 16 hex digits; ``evaluate_run`` returns it as
  ``"episodes_digest"`` so a table built from several runs can prove they share their episodes.
  """
  first = jax.tree.map(lambda leaf: np.asarray(leaf[0]), sampler.sample_at(key, 0))
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(first):
    digest.update(f"{leaf.dtype}{leaf.shape}".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def _checkpoint_choice(checkpoint: str | int) -> str | int:
  """``"best"``, ``"last"`` or a step number (an int, or a string of digits)."""
  if checkpoint in ("best", "last"):
    return checkpoint
  if isinstance(checkpoint, str) and checkpoint.strip().isdigit():
    return int(checkpoint)
  if isinstance(checkpoint, int) and not isinstance(checkpoint, bool) and checkpoint >= 0:
    return checkpoint
  raise ValueError(f"checkpoint must be 'best', 'last' or a step number, got {checkpoint!r}; "
                   "e.g. --checkpoint best or --checkpoint 2000 (ls RUN/checkpoints lists them)")


def _fit_bar_to_budget(bar, config: Config, elapsed: float, step: int) -> None:
  """Ends the bar at the step where the time budget will stop the run, so its ETA is the budget's.

  tqdm's ETA assumes the run goes to ``meta_steps``; with ``time_budget_minutes`` it stops
  earlier (see :func:`_budget_total`).
  """
  rate = bar.format_dict.get("rate")
  if config.time_budget_minutes is not None and rate:
    bar.total = _budget_total(config, elapsed, step, rate)


def _budget_total(config: Config, elapsed: float, step: int, rate: float) -> int:
  """The step a run at ``rate`` steps/s stops at: ``meta_steps``, or earlier, about
  ``step + rate * (budget - elapsed)``, when the time budget runs out first."""
  if config.time_budget_minutes is None:
    return config.meta_steps
  left = max(0.0, 60 * config.time_budget_minutes - elapsed)
  return max(step, min(config.meta_steps, step + math.ceil(rate * left)))


def _progress_bar(total: int, start: int, enabled: bool):
  if not enabled:
    return None
  from tqdm.auto import tqdm

  return tqdm(total=total, initial=start, desc="meta-train", unit="step", smoothing=0.05,
              dynamic_ncols=True)
