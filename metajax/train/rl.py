"""Training driver for meta-RL (RL²): config, resumable loop, metrics, test on fresh tasks.

``metajax train configs/rl2_bandits.py:k5n10`` lands here. It reuses the few-shot trainer's
pieces: the orbax :class:`~metajax.train.checkpoint.Checkpointer` (RL² keeps its state in a
:class:`metajax.MetaTrainState`), the JSON-lines :class:`~metajax.train.metrics_log.MetricsLog`
and a tqdm progress bar. Keys are ``fold_in(key, step)``, so a resumed run reproduces the
uninterrupted one bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

ENVS = ("bernoulli_bandit", "tabular_mdp", "point_navigation")
ALGORITHMS = ("rl2",)


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """Everything an RL² run needs.

  Attributes:
    name: a short label for the run.
    algorithm: ``"rl2"``.
    env: ``"bernoulli_bandit"``, ``"tabular_mdp"``, ``"point_navigation"`` or
      ``"gymnax:<id>"`` (needs ``pip install 'metajax[rl]'``).
    env_kwargs: keyword arguments of the environment factory (``arms``, ``pulls``, ...).
    episodes: episodes per trial.
    algorithm_kwargs: keyword arguments of :func:`metajax.algorithms.rl2` (``hidden``, ...).
    meta_steps: PPO steps.
    seed: seed of initialisation, training and test tasks.
    log_every: steps between metric records.
    checkpoint_every: steps between checkpoints.
    test_tasks: fresh tasks of the final test (mean total reward +- 95% CI).
    run_dir: the run folder (checkpoints, ``metrics.jsonl``, ``results.json``, plot).
  """

  name: str = "rl2"
  algorithm: str = "rl2"
  env: str = "bernoulli_bandit"
  env_kwargs: dict = dataclasses.field(default_factory=dict)
  episodes: int = 10
  algorithm_kwargs: dict = dataclasses.field(default_factory=dict)
  meta_steps: int = 1000
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 500
  test_tasks: int = 1000
  run_dir: str = "runs/rl2"

  def replace(self, **changes: Any) -> RLConfig:
    return dataclasses.replace(self, **changes)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  def validated(self) -> RLConfig:
    """Checks names and ranges without compiling anything; returns ``self``.

    Raises:
      ValueError: naming the key, its value and the allowed values.
    """
    if self.algorithm not in ALGORITHMS:
      raise ValueError(f"algorithm={self.algorithm!r} is not one of {ALGORITHMS}; MAML-RL is "
                       "available as metajax.algorithms.maml_rl (library API).")
    if self.env not in ENVS and not self.env.startswith("gymnax:"):
      raise ValueError(f"env={self.env!r} is not one of {ENVS} or 'gymnax:<id>'.")
    for key in ("episodes", "meta_steps", "log_every", "checkpoint_every", "test_tasks"):
      value = getattr(self, key)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"config key {key!r} must be an int >= 1, got {value!r}.")
    return self


class RLResult(NamedTuple):
  """What :func:`train_rl` returns.

  Attributes:
    run_dir: the run folder.
    steps: PPO steps done.
    test: ``{"mean", "ci95", "tasks"}`` of the total reward per trial on fresh tasks.
  """

  run_dir: Path
  steps: int
  test: dict


def make_env(config: RLConfig):
  """The environment a config names."""
  from metajax import envs

  if config.env.startswith("gymnax:"):
    return envs.from_gymnax(config.env.split(":", 1)[1], **config.env_kwargs)
  return getattr(envs, config.env)(**config.env_kwargs)


def train_rl(config: RLConfig, *, resume: bool | None = None, progress: bool = True,
             report: Callable[[str], None] | None = None) -> RLResult:
  """Trains RL² as ``config`` says, resuming from the newest checkpoint when asked.

  Args:
    config: the run's :class:`RLConfig`.
    resume: ``True`` resume (error if nothing to resume), ``False`` start afresh (error if the
      folder holds checkpoints), ``None`` resume when checkpoints exist.
    progress: show a progress bar.
    report: called with messages for the user.

  Returns:
    An :class:`RLResult`.

  Raises:
    ValueError: a bad config, a non-finite loss (naming the step), or a resume conflict.

  Example:
    >>> result = train_rl(RLConfig(meta_steps=10, run_dir="/tmp/rl2"))  # doctest: +SKIP
  """
  from tqdm import tqdm

  from metajax.algorithms.rl2 import rl2
  from metajax.envs import bandit_baselines
  from metajax.train.checkpoint import Checkpointer
  from metajax.train.metrics_log import MetricsLog

  config = config.validated()
  report = report or (lambda message: None)
  run_dir = Path(config.run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
  env = make_env(config)
  learner = rl2(env, episodes=config.episodes, **config.algorithm_kwargs)
  learner.check_task(env.sample_task(jax.random.key(config.seed)))
  state = learner.init(jax.random.key(config.seed))
  checkpointer = Checkpointer(run_dir / "checkpoints")
  saved = checkpointer.steps()
  config_path = run_dir / "config.json"
  if saved and resume is False:
    raise ValueError(f"{run_dir} already holds checkpoints {saved}; resume or pick a new run_dir")
  if not saved and resume is True:
    raise ValueError(f"nothing to resume in {run_dir}")
  start = 0
  if saved:
    previous = json.loads(config_path.read_text()) if config_path.exists() else None
    mutable = {"meta_steps", "run_dir", "name", "test_tasks", "log_every", "checkpoint_every"}
    if previous is not None:
      changed = sorted(k for k, v in dataclasses.asdict(config).items()
                       if k not in mutable and previous.get(k) != v)
      if changed:
        raise ValueError(f"cannot resume {run_dir}: the config changed in {changed}")
    restored, step, _ = checkpointer.restore_latest(state, report=report)
    if restored is not None:
      state, start = restored, int(step)
      report(f"resumed {run_dir} at step {start}")
  config_path.write_text(config.to_json())
  log = MetricsLog(run_dir, keep_until=start if saved else None, tensorboard=False)
  train_key = jax.random.key(config.seed + 1)
  bar = tqdm(total=config.meta_steps, initial=start, disable=not progress, unit="step")
  step = start
  try:
    while step < config.meta_steps:
      state, metrics = learner.train_step(state, train_key)
      step += 1
      bar.update(1)
      if step % config.log_every == 0 or step == config.meta_steps:
        record = {k: float(v) for k, v in metrics.items()}
        if not all(math.isfinite(v) for v in record.values()):
          raise ValueError(f"non-finite metrics {record} between steps "
                           f"{step - config.log_every} and {step}; lower the learning rate")
        log.write({"split": "train", "step": step, **record})
        bar.set_postfix(trial_return=f"{record['trial_return']:.3f}")
      if step % config.checkpoint_every == 0 or step == config.meta_steps:
        log.flush()
        checkpointer.save(step, state)
  finally:
    bar.close()
    log.close()
    checkpointer.close()

  totals = np.asarray(learner.evaluate(state.params, jax.random.key(config.seed + 2),
                                       config.test_tasks))
  mean, ci95 = bandit_baselines.mean_ci(totals)
  test = {"mean": mean, "ci95": ci95, "tasks": config.test_tasks, "step": step}
  (run_dir / "results.json").write_text(json.dumps({"test": test}, indent=2))
  _plot(run_dir)
  return RLResult(run_dir, step, test)


def _plot(run_dir: Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from metajax.train.metrics_log import read_metrics

  train = [r for r in read_metrics(run_dir) if r.get("split") == "train"]
  if not train:
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot([r["step"] for r in train], [r["trial_return"] for r in train])
  ax.set(xlabel="PPO step", ylabel="mean total reward per trial", title=run_dir.name)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(run_dir / "learning_curve.png", dpi=100)
  plt.close(fig)
