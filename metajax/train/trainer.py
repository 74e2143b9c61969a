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
from metajax.core.meta_step import MetaTrainState, evaluate_tasks, init_meta_state, make_meta_step
from metajax.data.sampler import EpisodeSampler, episode_sampler
from metajax.train import metrics_log, plots, registry
from metajax.train._atomic import write_text_atomically
from metajax.train.checkpoint import Checkpointer, CheckpointError
from metajax.train.config import RESUME_MUTABLE, Config, validate

Report = Callable[[str], None]

# Sub-keys of the seed key (fold_in indices); changing them changes every run.
_MODEL, _TRAIN_EPISODES, _STEP, _VAL, _TEST = range(5)


class NonFiniteError(RuntimeError):
  """A training metric became NaN or infinite; the run stopped without saving the bad state."""


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
                      episodes: int, *, steps: int | None = None, batching: str = "auto") -> dict:
  """Mean accuracy and loss with 95% confidence half-widths over ``episodes`` episodes.

  Episodes come from ``sampler.sample(fold_in(key, i))`` for batches ``i = 0, 1, ...``, so the
  same key gives the same episodes for every model.

  Args:
    learner: the algorithm.
    params: meta-parameters.
    sampler: episodes of the evaluation split.
    key: the base key of the episodes.
    episodes: how many (the last batch is cut to fit).
    steps: test-time inner steps (``None``: the learner's default).
    batching: ``"auto"``, ``"vmap"`` or ``"map"`` over the episodes of a batch (see
      :func:`metajax.evaluate_tasks`).

  Returns:
    ``{"accuracy", "accuracy_ci95", "loss", "loss_ci95", "episodes"}``.
  """
  per_task: dict[str, list[np.ndarray]] = {}
  batches = math.ceil(episodes / sampler.batch_size)
  for i in range(batches):
    batch_key = jax.random.fold_in(key, i)
    tasks = sampler.sample(batch_key)
    metrics = evaluate_tasks(learner, params, tasks, jax.random.fold_in(batch_key, 1),
                             steps=steps, batching=batching)
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
  say = report or (lambda message: None)
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
  keys = _keys(config)
  state, start, skipped = setup.template, 0, []
  if existing:
    restored, step, skipped = checkpointer.restore_latest(setup.template, report=say)
    if restored is None:
      raise CheckpointError(f"none of the checkpoints in {run_dir / 'checkpoints'} could be "
                            "restored:\n  " + "\n  ".join(skipped))
    state, start = restored, step
    say(f"resuming {run_dir} from the checkpoint of step {step}")
  write_text_atomically(run_dir / "config.json", config.to_json())
  log = metrics_log.MetricsLog(run_dir, keep_until=start if existing else None)

  train_data = registry.load_split(config, config.train_split)
  sampler = episode_sampler(train_data, ways=config.ways, shots=config.shots,
                            queries=config.queries, batch_size=config.meta_batch)
  val_sampler = _eval_sampler(config, config.val_split)
  meta_step = make_meta_step(setup.learner, setup.optimizer, batching=config.batching)

  stop = _StopFlag(handle_signals)
  bar = _progress_bar(config.meta_steps, start, progress)
  step, pending, last_checked = start, [], start
  best = _best_so_far(checkpointer)
  stopped_by = None
  began = time.monotonic()
  try:
    batches = sampler.iterate(keys[_TRAIN_EPISODES], start=start)
    while step < config.meta_steps:
      tasks = next(batches)
      state, metrics = meta_step(state, tasks, jax.random.fold_in(keys[_STEP], step))
      step += 1
      pending.append((step, metrics))
      if interrupt_at is not None and step >= interrupt_at:
        stopped_by = "interrupt"
      stopped_by = stopped_by or stop.reason
      over_time = (config.time_budget_minutes is not None
                   and time.monotonic() - began > 60 * config.time_budget_minutes)
      if over_time and stopped_by is None:
        stopped_by = "time budget"
      validate_now = step % config.eval_every == 0 or step == config.meta_steps or over_time
      if step % config.log_every == 0 or validate_now or stopped_by:
        last = _flush(pending, log, bar, last_checked, checkpointer)
        last_checked, pending = step, []
        if bar is not None and last:
          bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last.get('accuracy', 0):.3f}",
                          val="-" if best[1] is None else f"{best[1]:.3f}", refresh=False)
      if validate_now:
        val = evaluate_episodes(setup.eval_learner, state.params, val_sampler, keys[_VAL],
                                config.eval_episodes, steps=config.test_inner_steps)
        log.write({"split": "val", "step": step, **val})
        log.flush()
        checkpointer.save(step, state, val_accuracy=val["accuracy"])
        if best[1] is None or val["accuracy"] > best[1]:
          best = (step, val["accuracy"])
      elif stopped_by:
        log.flush()
        checkpointer.save(step, state)
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

  test = final_test(config, setup, checkpointer, state, step, progress=progress, report=say)
  checkpointer.close()
  summary = {"step": step, "best_step": best[0], "best_val_accuracy": best[1], "test": test,
             "train_seconds_this_call": seconds, "stopped_by": stopped_by}
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
               report: Report | None = None) -> dict:
  """Tests the best checkpoint (or ``state``), writes test records and the plots."""
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
                           config.test_episodes, steps=config.test_inner_steps)
  inner = config.test_inner_steps
  if inner is None and registry.ALGORITHMS[config.algorithm].gradient_based:
    inner = config.algorithm_kwargs.get("eval_steps", config.algorithm_kwargs.get("steps"))
  record = {"split": "test", "step": chosen, "inner_steps": inner, **test}
  _append(run_dir, [record])
  records = metrics_log.read_metrics(run_dir)
  plots.learning_curves(records, run_dir / "learning_curves.png", title=config.name)
  if config.adaptation_steps and registry.ALGORITHMS[config.algorithm].gradient_based:
    points = []
    for n in range(config.adaptation_steps + 1):
      result = evaluate_episodes(setup.eval_learner, params, test_sampler, _keys(config)[_TEST],
                                 config.adaptation_episodes, steps=n)
      points.append({"split": "adaptation", "step": chosen, "inner_steps": n, **result})
    _append(run_dir, points)
    plots.adaptation_curve([p["inner_steps"] for p in points], [p["accuracy"] for p in points],
                           [p["accuracy_ci95"] for p in points], run_dir / "adaptation.png",
                           train_steps=config.algorithm_kwargs.get("steps"), title=config.name)
  return record


def _append(run_dir: Path, records: list[dict]) -> None:
  with (run_dir / metrics_log.FILENAME).open("a") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


def evaluate_run(run_dir: str | Path, *, episodes: int = 600, checkpoint: str | int = "best",
                 steps: int | None = None, split: str | None = None, ways: int | None = None,
                 shots: int | None = None, queries: int | None = None) -> dict:
  """Evaluates a saved run's checkpoint on its test split.

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

  Returns:
    ``{"accuracy", "accuracy_ci95", "loss", "loss_ci95", "episodes", "step", "split", "ways",
    "shots", "queries"}``.
  """
  run_dir = Path(run_dir)
  config_path = run_dir / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} not found; is {run_dir} a metajax run folder?")
  config = validate(Config.from_dict(json.loads(config_path.read_text())))
  config = validate(config.replace(
      test_episodes=episodes, eval_batch=min(config.eval_batch, episodes),
      test_ways=config.test_ways if ways is None else ways,
      test_shots=config.test_shots if shots is None else shots,
      test_queries=config.test_queries if queries is None else queries))
  setup = _setup(config)
  checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.keep_checkpoints)
  available = checkpointer.steps()
  if not available:
    raise CheckpointError(f"{run_dir / 'checkpoints'} holds no checkpoint")
  if checkpoint == "best":
    chosen = checkpointer.best_step() or available[-1]
  elif checkpoint == "last":
    chosen = available[-1]
  else:
    chosen = int(checkpoint)
    if chosen not in available:
      raise ValueError(f"no checkpoint of step {chosen} in {run_dir}; available: {available}")
  params = checkpointer.restore(chosen, setup.template).params
  checkpointer.close()
  split = split or config.test_split
  sampler = _eval_sampler(config, split)
  result = evaluate_episodes(setup.eval_learner, params, sampler, _keys(config)[_TEST], episodes,
                             steps=config.test_inner_steps if steps is None else steps)
  return {**result, "step": chosen, "split": split, "ways": config.eval_ways,
          "shots": config.eval_shots, "queries": config.eval_queries}


def _progress_bar(total: int, start: int, enabled: bool):
  if not enabled:
    return None
  from tqdm.auto import tqdm

  return tqdm(total=total, initial=start, desc="meta-train", unit="step", smoothing=0.05,
              dynamic_ncols=True)
