"""Training driver for meta-RL (RL², MAML-RL): config, resumable loop, metrics, test on fresh tasks.

``metajax train configs/rl2_bandits.py:k5n10`` and ``metajax train
configs/maml_rl_navigation.py:maml`` land here. One loop serves both algorithms; each supplies
its initial state, its jitted step, the metric of its progress bar and its test. It reuses the
few-shot trainer's pieces: the orbax :class:`~metajax.train.checkpoint.Checkpointer` (both keep
their state in a :class:`metajax.MetaTrainState`), the JSON-lines
:class:`~metajax.train.metrics_log.MetricsLog` and a tqdm progress bar. Keys are
``fold_in(key, step)``, so a resumed run reproduces the uninterrupted one bit for bit.

The tests differ: RL² scores the total reward per trial on fresh tasks; MAML-RL adapts to fresh
tasks with 0, 1, ..., ``adapt_steps`` policy-gradient steps and scores the mean return after each
(``results.json``, ``adaptation.png``), for the trained initialisation and, as the baseline of
Finn et al. (2017, Figure 5), for the untrained one.
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

from metajax.core.types import PyTree

ENVS = ("bernoulli_bandit", "tabular_mdp", "point_navigation")
ALGORITHMS = ("rl2", "maml_rl")
# algorithm_kwargs of MAML-RL with their defaults (Finn et al., 2017, Section 5.3: a 2 x 100 ReLU
# policy, alpha = 0.1, 20 tasks per outer step). The outer step is Adam (``learning_rate``) or
# the paper's TRPO (``outer="trpo"``: ``max_kl``, ``cg_iters``, ``cg_damping``, line search).
MAML_RL_KWARGS = {"inner_lr": 0.1, "steps": 1, "gamma": 0.99, "baseline": "linear",
                  "first_order": False, "score_term": True, "normalize_advantages": True,
                  "hidden": (100, 100), "init_log_std": 0.0, "learning_rate": 1e-2,
                  "tasks_per_step": 20, "outer": "adam", "max_kl": 0.01, "cg_iters": 10,
                  "cg_damping": 1e-5, "backtrack_ratio": 0.8, "max_backtracks": 15}
_TRPO_KWARGS = ("max_kl", "cg_iters", "cg_damping", "backtrack_ratio", "max_backtracks")


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """Everything an RL² or MAML-RL run needs.

  Attributes:
    name: a short label for the run.
    algorithm: ``"rl2"`` or ``"maml_rl"``.
    env: ``"bernoulli_bandit"``, ``"tabular_mdp"``, ``"point_navigation"`` or
      ``"gymnax:<id>"`` (needs ``pip install 'metajax[rl]'``).
    env_kwargs: keyword arguments of the environment factory (``arms``, ``pulls``, ...).
    episodes: RL²: episodes per trial. MAML-RL: episodes per policy-gradient batch (each inner
      step's batch and the post-adaptation batch; 20 in the paper).
    algorithm_kwargs: RL²: keyword arguments of :func:`metajax.algorithms.rl2` (``hidden``,
      ...). MAML-RL: keyword arguments of :func:`metajax.algorithms.maml_rl` (``inner_lr``,
      ``steps``, ``gamma``, ``baseline``, ``first_order``, ``score_term``,
      ``normalize_advantages``), of its ``mlp_policy``
      (``hidden``, a tuple of layer widths; ``init_log_std``), ``tasks_per_step`` and the
      outer step: ``outer="adam"`` (``learning_rate``, unused by TRPO) or ``outer="trpo"``
      (``max_kl``, ``cg_iters``, ``cg_damping``, ``backtrack_ratio``, ``max_backtracks``; see
      :func:`metajax.algorithms.make_trpo_meta_rl_step`); defaults in
      ``MAML_RL_KWARGS``.
    meta_steps: PPO steps (RL²) or outer meta-gradient steps (MAML-RL).
    seed: seed of initialisation, training and test tasks.
    log_every: steps between metric records.
    checkpoint_every: steps between checkpoints.
    test_tasks: fresh tasks of the final test (mean +- 95% CI over tasks).
    adapt_steps: MAML-RL: the test adapts with 0, 1, ..., ``adapt_steps`` policy-gradient steps
      and scores the return after each. Unused by RL².
    adapt_step_sizes: MAML-RL: the size of each test adaptation step, ``adapt_steps`` numbers
      > 0 (``None``: ``inner_lr`` for every step). The MAML paper's test script halves the
      step size after the first step (``(alpha, alpha/2, alpha/2)``).
    run_dir: the run folder (checkpoints, ``metrics.jsonl``, ``results.json``, plots).
    devices: RL² only: devices to train on, ``"all"``, a number, or ``None`` (one device).
      Each step's trials and every PPO minibatch are split over them, parameters replicated
      (``rl2(..., mesh=...)``); each step equals the one-device step up to float summation
      order (over hundreds of steps the runs drift apart, as two samples of the same
      training), and a run may resume on another number of devices. One process only. On a CPU,
      ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` makes two devices of the cores.
      The test runs on one device.

  Example:
    >>> from metajax.train import RLConfig
    >>> config = RLConfig(env_kwargs={"arms": 5, "pulls": 10}, episodes=10).validated()
    >>> config.algorithm, config.env
    ('rl2', 'bernoulli_bandit')
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
  adapt_steps: int = 3
  adapt_step_sizes: tuple[float, ...] | None = None
  run_dir: str = "runs/rl2"
  devices: int | str | None = None

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
      raise ValueError(f"algorithm={self.algorithm!r} is not one of {ALGORITHMS}.")
    if self.env not in ENVS and not self.env.startswith("gymnax:"):
      raise ValueError(f"env={self.env!r} is not one of {ENVS} or 'gymnax:<id>'.")
    for key in ("episodes", "meta_steps", "log_every", "checkpoint_every", "test_tasks"):
      value = getattr(self, key)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config key {key!r} must be an int >= 1, got {value!r}.")
    if (not isinstance(self.adapt_steps, int) or isinstance(self.adapt_steps, bool)
        or self.adapt_steps < 0):
      raise ValueError(f"config key 'adapt_steps' must be an int >= 0, got {self.adapt_steps!r}.")
    if self.adapt_step_sizes is not None:
      sizes = self.adapt_step_sizes
      if not (isinstance(sizes, tuple | list) and len(sizes) == self.adapt_steps and all(
          isinstance(a, int | float) and not isinstance(a, bool) and 0 < a < math.inf
          for a in sizes)):
        raise ValueError(f"config key 'adapt_step_sizes' must be None or {self.adapt_steps} "
                         f"(adapt_steps) finite numbers > 0, got {sizes!r}; e.g. "
                         f"adapt_step_sizes={(0.1,) * self.adapt_steps}.")
    from metajax.train.distributed import check_layout_keys

    check_layout_keys(self.devices, {})
    if self.algorithm == "maml_rl":
      if self.devices not in (None, 1, "all"):  # 'all' is checked where it is resolved
        raise ValueError(f"config key 'devices' is {self.devices!r}, but MAML-RL trains on one "
                         "device; leave devices out (devices=None) or use algorithm='rl2'.")
      _check_maml_rl_kwargs(self.algorithm_kwargs)
    return self


def _check_maml_rl_kwargs(kwargs: dict) -> None:
  """Names, types and ranges of MAML-RL's ``algorithm_kwargs``; raises ``ValueError``."""
  for key, value in kwargs.items():
    where = f"algorithm_kwargs.{key}={value!r}"
    if key in ("episodes", "seed"):
      raise ValueError(f"{where}: MAML-RL takes {key} from the config key {key!r}; drop "
                       f"algorithm_kwargs.{key} and set {key}={value!r} instead.")
    if key not in MAML_RL_KWARGS:
      raise ValueError(f"{where} is not a MAML-RL option; use one of {sorted(MAML_RL_KWARGS)}.")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key == "outer" and value not in ("adam", "trpo"):
      raise ValueError(f"{where}: outer must be 'adam' or 'trpo'.")
    if key == "outer" and value == "trpo" and kwargs.get("steps", 1) == 0:
      raise ValueError(f"{where} needs algorithm_kwargs.steps >= 1 (the trust region is on the "
                       "adapted policy); use outer='adam' for steps=0.")
    if key in _TRPO_KWARGS and kwargs.get("outer", "adam") != "trpo":
      raise ValueError(f"{where} is a TRPO option; add algorithm_kwargs.outer='trpo' or drop it.")
    if key in ("max_kl", "cg_damping") and not (number and 0 <= value < math.inf and (
        value > 0 or key == "cg_damping")):
      raise ValueError(f"{where}: {key} must be a finite number "
                       f"{'>= 0' if key == 'cg_damping' else '> 0'}, e.g. "
                       f"algorithm_kwargs.{key}={MAML_RL_KWARGS[key]}.")
    if key == "backtrack_ratio" and not (number and 0 < value < 1):
      raise ValueError(f"{where}: backtrack_ratio must lie in (0, 1), e.g. 0.8.")
    if key in ("cg_iters", "max_backtracks") and not (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1):
      raise ValueError(f"{where}: {key} must be an int >= 1, e.g. "
                       f"algorithm_kwargs.{key}={MAML_RL_KWARGS[key]}.")
    if key in ("inner_lr", "learning_rate") and not (number and 0 < value < math.inf):
      raise ValueError(f"{where}: {key} must be a finite number > 0, e.g. "
                       f"algorithm_kwargs.{key}={MAML_RL_KWARGS[key]}.")
    if key == "gamma" and not (number and 0 < value <= 1):
      raise ValueError(f"{where}: gamma must be a number in (0, 1], e.g. "
                       "algorithm_kwargs.gamma=0.99.")
    if key == "init_log_std" and not (number and math.isfinite(value)):
      raise ValueError(f"{where}: init_log_std must be a finite number, e.g. 0.0.")
    integer = isinstance(value, int) and not isinstance(value, bool)
    if key == "steps" and not (integer and value >= 0):
      raise ValueError(f"{where}: steps (inner policy-gradient steps) must be an int >= 0; 1 is "
                       "MAML, 0 pretrains one policy on the task mixture.")
    if key == "tasks_per_step" and not (integer and value >= 1):
      raise ValueError(f"{where}: tasks_per_step must be an int >= 1, e.g. 20.")
    if key in ("first_order", "score_term", "normalize_advantages") and not isinstance(value,
                                                                                       bool):
      raise ValueError(f"{where}: {key} must be True or False.")
    if key == "baseline" and value not in ("linear", "none"):
      raise ValueError(f"{where}: baseline must be 'linear' or 'none'.")
    if key == "hidden" and not (isinstance(value, tuple | list) and all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value)):
      raise ValueError(f"{where}: hidden must be a tuple of layer widths >= 1, e.g. "
                       "algorithm_kwargs.hidden=(100,100).")


class RLResult(NamedTuple):
  """What :func:`train_rl` returns.

  Attributes:
    run_dir: the run folder.
    steps: training steps done.
    test: RL²: ``{"mean", "ci95", "tasks", "step"}`` of the total reward per trial on fresh
      tasks, actions sampled from the policy, and ``"greedy": {"mean", "ci95"}`` on the same
      tasks with the most probable action taken at each step. MAML-RL:
      ``{"adaptation_steps": [0, ..., K], "mean": [...], "ci95": [...],
      "initial": {"mean", "ci95"}, "tasks", "step", "gamma"}``: the mean return per episode
      (discounted by ``gamma``, as :func:`metajax.algorithms.maml_rl` measures it) after each
      number of adaptation steps, for the trained and (``"initial"``) the untrained policy.
      Empty when the run was stopped early.
    stopped_by: ``"SIGINT"`` or ``"SIGTERM"`` when a signal stopped the run before
      ``meta_steps`` (a checkpoint of the last step done was saved; the same command
      resumes), else ``None``.

  Example:
    >>> result = train_rl(RLConfig(meta_steps=10, run_dir="/tmp/rl2"))  # doctest: +SKIP
    >>> result.test["mean"], result.test["greedy"]["mean"]  # doctest: +SKIP
  """

  run_dir: Path
  steps: int
  test: dict
  stopped_by: str | None = None


def make_env(config: RLConfig):
  """The environment a config names."""
  from metajax import envs

  if config.env.startswith("gymnax:"):
    return envs.from_gymnax(config.env.split(":", 1)[1], **config.env_kwargs)
  return getattr(envs, config.env)(**config.env_kwargs)


def rl_test_tasks(config: RLConfig) -> PyTree:
  """The fresh tasks of a run's final test, as the trainer draws them (``seed + 2``).

  Baselines scored on these tasks face exactly the tasks a trained run was tested on
  (``benchmarks/rl2_tabular_mdp_baselines.py`` does so). RL²'s test calls
  ``learner.evaluate(params, jax.random.key(seed + 2), tasks)``, which splits that key into the
  tasks' half and the rollouts' half; MAML-RL's test samples from the key itself.

  Args:
    config: the run's config (``algorithm``, ``env``, ``env_kwargs``, ``seed``,
      ``test_tasks``).

  Returns:
    The environment's task pytree with a leading axis of ``config.test_tasks``.

  Raises:
    ValueError: as :meth:`RLConfig.validated` for a bad config.

  Example:
    >>> from metajax.train import RLConfig, rl_test_tasks
    >>> config = RLConfig(env_kwargs={"arms": 5, "pulls": 10}, test_tasks=3)
    >>> rl_test_tasks(config).means.shape
    (3, 5)
  """
  from metajax.envs import sample_tasks

  config = config.validated()
  key = jax.random.key(config.seed + 2)
  if config.algorithm == "rl2":
    key, _ = jax.random.split(key)  # the tasks' half of rl2's evaluate(params, key, count)
  return sample_tasks(make_env(config), key, config.test_tasks)


class _Run(NamedTuple):
  """What one algorithm brings to the shared loop.

  Attributes:
    state: the initial :class:`metajax.MetaTrainState` (also the checkpoint template).
    train_step: ``train_step(state, key) -> (state, metrics)``, jitted, folding the step into
      the key.
    curve: the metrics on the progress bar and the learning curve (first one on the bar).
    xlabel: what a step is, for the learning curve.
    test: ``test(params) -> dict`` on fresh tasks (seeded by the config).
  """

  state: Any
  train_step: Callable
  curve: tuple[str, ...]
  xlabel: str
  test: Callable[[Any], dict]


def _build_run(config: RLConfig, mesh: jax.sharding.Mesh | None = None) -> _Run:
  """The config's environment and algorithm, as one :class:`_Run` (training and evaluation);
  ``mesh``: RL²'s training devices (:func:`train_rl` passes the config's ``devices``)."""
  env = make_env(config)
  if config.algorithm == "maml_rl":
    return _maml_rl_run(config, env)
  return _rl2_run(config, env, mesh)


def _training_mesh(config: RLConfig) -> jax.sharding.Mesh | None:
  """The device mesh of a config's ``devices`` (``None``: one device).

  Raises:
    ValueError: in a multi-process run, for devices this machine does not have, or for
      MAML-RL on more than one device (``devices="all"`` on a multi-device machine).
  """
  from metajax.train import distributed

  if jax.process_count() > 1:
    raise ValueError(f"meta-RL runs train in one process, but this is one of "
                     f"{jax.process_count()}; start a single process (devices may still be "
                     "several devices of this machine).")
  try:
    mesh = distributed.device_layout(config.devices).mesh
  except ValueError as error:
    if jax.default_backend() != "cpu":
      raise
    raise ValueError(f"{error}. On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                     "(set before the command) makes N devices of the cores; a run may also "
                     "resume with devices=1.") from None
  if config.algorithm == "maml_rl":
    if mesh is not None and mesh.size > 1:
      raise ValueError(f"config key 'devices' is {config.devices!r}, {mesh.size} devices here, "
                       "but MAML-RL trains on one device; leave devices out (devices=None) or "
                       "use algorithm='rl2'.")
    return None
  return mesh


def _rl2_run(config: RLConfig, env, mesh: jax.sharding.Mesh | None = None) -> _Run:
  from metajax.algorithms.rl2 import rl2
  from metajax.envs import bandit_baselines

  learner = rl2(env, episodes=config.episodes, mesh=mesh, **config.algorithm_kwargs)
  learner.check_task(env.sample_task(jax.random.key(config.seed)))

  def test(params):
    # The policy as trained (actions sampled) and its greedy version (most probable action),
    # on the same tasks.
    tasks, out = rl_test_tasks(config), {}
    for name, greedy in (("sampled", False), ("greedy", True)):
      totals = np.asarray(learner.evaluate(params, jax.random.key(config.seed + 2), tasks,
                                           greedy=greedy))
      out[name] = bandit_baselines.mean_ci(totals)
    (mean, ci95), (greedy_mean, greedy_ci95) = out["sampled"], out["greedy"]
    return {"mean": mean, "ci95": ci95, "tasks": config.test_tasks,
            "greedy": {"mean": greedy_mean, "ci95": greedy_ci95}}

  return _Run(learner.init(jax.random.key(config.seed)), learner.train_step,
              ("trial_return",), "PPO step", test)


# Test tasks adapted at once (lax.map batch): bounds the memory of 20 x 100-step episodes.
_TEST_BATCH = 50


def _maml_rl_run(config: RLConfig, env) -> _Run:
  import optax

  from metajax.algorithms.maml_rl import (
      make_meta_rl_step,
      make_trpo_meta_rl_step,
      maml_rl,
      mlp_policy,
  )
  from metajax.core.meta_step import init_meta_state
  from metajax.envs import bandit_baselines

  kwargs = {**MAML_RL_KWARGS, **config.algorithm_kwargs}
  policy = mlp_policy(env, hidden=tuple(kwargs.pop("hidden")),
                      init_log_std=kwargs.pop("init_log_std"))
  outer, learning_rate = kwargs.pop("outer"), kwargs.pop("learning_rate")
  trpo = {key: kwargs.pop(key) for key in _TRPO_KWARGS}
  tasks_per_step = kwargs.pop("tasks_per_step")
  learner = maml_rl(env, policy, episodes=config.episodes, seed=config.seed, **kwargs)
  learner.check_task(env.sample_task(jax.random.key(config.seed)))
  if outer == "trpo":
    optimizer = optax.identity()  # TRPO keeps no optimizer state
    train_step = make_trpo_meta_rl_step(env, policy, tasks_per_step=tasks_per_step,
                                        episodes=config.episodes, **kwargs, **trpo)
  else:
    optimizer = optax.adam(learning_rate)
    train_step = make_meta_rl_step(learner, env, optimizer, tasks_per_step=tasks_per_step)
  # The test adapts as training does (gamma, baseline; inner_lr unless adapt_step_sizes), for
  # 0..adapt_steps.
  evaluator = maml_rl(env, policy, episodes=config.episodes, seed=config.seed,
                      **{**kwargs, "steps": config.adapt_steps})
  sizes = None if config.adapt_step_sizes is None else tuple(config.adapt_step_sizes)

  @jax.jit
  def returns(params, tasks, keys):
    one = lambda task_key: evaluator.evaluate(params, *task_key, step_sizes=sizes)["returns"]
    return jax.lax.map(one, (tasks, keys), batch_size=min(_TEST_BATCH, config.test_tasks))

  def test(params):
    tasks = rl_test_tasks(config)
    keys = jax.random.split(jax.random.key(config.seed + 3), config.test_tasks)
    out = {"adaptation_steps": list(range(config.adapt_steps + 1))}
    for name, values in (("trained", params), ("initial", evaluator.init())):
      table = np.asarray(returns(values, tasks, keys))
      pairs = [bandit_baselines.mean_ci(table[:, k]) for k in range(table.shape[1])]
      summary = {"mean": [m for m, _ in pairs], "ci95": [c for _, c in pairs]}
      if name == "trained":
        out.update(summary)
      else:
        out["initial"] = summary
    return {**out, "tasks": config.test_tasks, "gamma": kwargs["gamma"],
            "step_sizes": list(sizes or (kwargs["inner_lr"],) * config.adapt_steps)}

  return _Run(init_meta_state(learner, optimizer), train_step, ("post_return", "pre_return"),
              "outer step", test)


# Config keys a resumed run (and a branch_rl_run branch) may change: they do not alter the
# training steps (devices: up to float summation order).
_RESUME_FREE_KEYS = ("meta_steps", "run_dir", "name", "test_tasks", "adapt_steps",
                     "adapt_step_sizes", "log_every", "checkpoint_every", "devices")


def train_rl(config: RLConfig, *, resume: bool | None = None, progress: bool = True,
             report: Callable[[str], None] | None = None,
             handle_signals: bool = True) -> RLResult:
  """Trains RL² or MAML-RL as ``config`` says, resuming from the newest checkpoint when asked.

  Writes ``config.json``, ``checkpoints/``, ``metrics.jsonl`` (one ``"train"`` record every
  ``log_every`` steps), ``learning_curve.png`` and ``results.json`` (the final test) to the run
  folder; MAML-RL also ``adaptation.png`` (return against adaptation steps).

  Args:
    config: the run's :class:`RLConfig`.
    resume: ``True`` resume (error if nothing to resume), ``False`` start afresh (error if the
      folder holds checkpoints), ``None`` resume when checkpoints exist.
    progress: show a progress bar.
    report: called with messages for the user.
    handle_signals: turn SIGINT (Ctrl-C) and SIGTERM into "finish the step, save a checkpoint,
      return" (main thread only; a second Ctrl-C exits at once). The test is skipped then.

  Returns:
    An :class:`RLResult`.

  Raises:
    ValueError: a bad config (before anything compiles), a non-finite metric (naming the
      steps), or a resume conflict.

  Example:
    >>> result = train_rl(RLConfig(meta_steps=10, run_dir="/tmp/rl2"))  # doctest: +SKIP
    >>> result = train_rl(RLConfig(algorithm="maml_rl", env="point_navigation",
    ...                            meta_steps=10, run_dir="/tmp/maml_rl"))  # doctest: +SKIP
  """
  from tqdm import tqdm

  from metajax.train.checkpoint import Checkpointer
  from metajax.train.metrics_log import MetricsLog
  from metajax.train.trainer import _StopFlag

  config = config.validated()
  report = report or (lambda message: None)
  run = _build_run(config, _training_mesh(config))
  state = run.state
  run_dir = Path(config.run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
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
    if previous is not None:
      current = json.loads(config.to_json())  # tuples as the saved JSON lists
      changed = sorted(k for k, v in current.items()
                       if k not in _RESUME_FREE_KEYS and previous.get(k) != v)
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
  stop = _StopFlag(handle_signals)
  stopped_by = None
  try:
    while step < config.meta_steps:
      state, metrics = run.train_step(state, train_key)
      step += 1
      bar.update(1)
      stopped_by = stop.check(step)
      if step % config.log_every == 0 or step == config.meta_steps or stopped_by:
        record = {k: float(v) for k, v in metrics.items()}
        if not all(math.isfinite(v) for v in record.values()):
          raise ValueError(f"non-finite metrics {record} between steps "
                           f"{step - config.log_every} and {step}; lower the learning rate")
        log.write({"split": "train", "step": step, **record})
        bar.set_postfix({run.curve[0]: f"{record[run.curve[0]]:.3f}"})
      if step % config.checkpoint_every == 0 or step == config.meta_steps or stopped_by:
        log.flush()
        checkpointer.save(step, state)
      if stopped_by:
        break
  finally:
    stop.restore()
    bar.close()
    log.close()
    checkpointer.close()
  if stopped_by:
    report(f"stopped ({stopped_by}) after step {step}; checkpoint saved in "
           f"{run_dir / 'checkpoints'}; the same command resumes")
    return RLResult(run_dir, step, {}, stopped_by)

  test = {**run.test(state.params), "step": step}
  (run_dir / "results.json").write_text(json.dumps({"test": test}, indent=2))
  _plot(run_dir, run.curve, run.xlabel)
  if "adaptation_steps" in test:
    _plot_adaptation(run_dir, test)
  return RLResult(run_dir, step, test)


def _plot(run_dir: Path, curve: tuple[str, ...], xlabel: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from metajax.train.metrics_log import read_metrics

  train = [r for r in read_metrics(run_dir) if r.get("split") == "train"]
  if not train:
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  for key in curve:
    ax.plot([r["step"] for r in train], [r[key] for r in train], label=key)
  ylabel = ("mean total reward per trial" if curve == ("trial_return",) else
            "mean return per episode")
  ax.set(xlabel=xlabel, ylabel=ylabel, title=run_dir.name)
  if len(curve) > 1:
    ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(run_dir / "learning_curve.png", dpi=100)
  plt.close(fig)


def _plot_adaptation(run_dir: Path, test: dict) -> None:
  """Return against policy-gradient adaptation steps, mean +- 95% CI (as MAML's Figure 5)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = test["adaptation_steps"]
  fig, ax = plt.subplots(figsize=(5, 4))
  for label, summary in ((f"trained ({test['step']} steps)", test),
                         ("initial (untrained)", test["initial"])):
    ax.errorbar(steps, summary["mean"], yerr=summary["ci95"], marker="o", capsize=3,
                label=label)
  ax.set(xlabel="policy-gradient adaptation steps", xticks=steps,
         ylabel=f"mean return per episode (gamma={test['gamma']:g})",
         title=f"{run_dir.name}: {test['tasks']} fresh tasks, 95% CI")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(run_dir / "adaptation.png", dpi=100)
  plt.close(fig)


def evaluate_rl_run(run_dir: str | Path, *, checkpoint: str | int = "last",
                    test_tasks: int | None = None, adapt_steps: int | None = None,
                    adapt_step_sizes: tuple[float, ...] | None = None) -> dict:
  """Runs the final test of a saved RL² or MAML-RL run again, on a checkpoint of its choice.

  The run's ``config.json`` rebuilds the learner and the test; the test tasks and keys follow
  the config's seed, so ``evaluate_rl_run(run_dir)`` on the last checkpoint reproduces the
  ``"test"`` of its ``results.json``.

  Args:
    run_dir: a run folder written by :func:`train_rl` (``metajax train`` of an RL config).
    checkpoint: ``"last"`` or a saved step.
    test_tasks: fresh tasks (``None``: the run's ``test_tasks``).
    adapt_steps: MAML-RL test adaptation steps (``None``: the run's).
    adapt_step_sizes: MAML-RL step size of each of them (``None``: the run's when
      ``adapt_steps`` is the run's, else ``inner_lr`` for every step).

  Returns:
    The test's dict (as ``results.json``'s ``"test"``) with ``"step"``, the checkpoint's step.

  Raises:
    FileNotFoundError: no ``config.json`` or no checkpoint in ``run_dir``.
    ValueError: an RL config with bad values, a checkpoint that is not saved, or a run folder
      of another kind (naming ``metajax evaluate`` for few-shot runs).

  Example:
    >>> evaluate_rl_run("runs/rl2_bandits_k5n100", test_tasks=2000)  # doctest: +SKIP
    {'mean': ..., 'ci95': ..., 'tasks': 2000, 'greedy': {...}, 'step': 4500}
  """
  config = _read_config(run_dir)
  changes: dict[str, Any] = {}
  if test_tasks is not None:
    changes["test_tasks"] = test_tasks
  if adapt_steps is not None and adapt_steps != config.adapt_steps:
    changes.update(adapt_steps=adapt_steps, adapt_step_sizes=None)
  if adapt_step_sizes is not None:
    changes["adapt_step_sizes"] = tuple(adapt_step_sizes)
  run = _build_run(config.replace(**changes).validated())
  state, step = _restore(run_dir, run.state, checkpoint)
  return {**run.test(state.params), "step": step}


def restore_rl_params(run_dir: str | Path, checkpoint: str | int = "last"
                      ) -> tuple[RLConfig, PyTree, int]:
  """The config, policy parameters and step of a checkpoint of a saved RL² or MAML-RL run.

  For scoring a trained policy on tasks of one's own choosing (e.g. RL² on the tasks a
  baseline played: ``benchmarks/rl2_bandits.py --run RUN``).

  Args:
    run_dir: a run folder written by :func:`train_rl`.
    checkpoint: ``"last"`` or a saved step.

  Returns:
    ``(config, params, step)``.

  Raises:
    FileNotFoundError, ValueError: as :func:`evaluate_rl_run`.

  Example:
    >>> config, params, step = restore_rl_params("runs/rl2_bandits_k5n100")  # doctest: +SKIP
  """
  config = _read_config(run_dir)
  state, step = _restore(run_dir, _build_run(config).state, checkpoint)
  return config, state.params, step


_SCHEDULE_KEYS = ("learning_rate_decay_begin", "learning_rate_decay_steps")


def branch_rl_run(source_dir: str | Path, step: int, config: RLConfig) -> Path:
  """Starts ``config.run_dir`` from a constant-rate RL² run's checkpoint, to decay from there.

  An RL² config with ``learning_rate_decay_begin=S`` takes, up to step S, the same updates
  as the constant-rate config it otherwise equals, bit for bit, so a run of it need not
  recompute those steps: this writes the source run's checkpoint ``step`` (<= S) into the new
  run folder as ``config``'s state (Adam's moments and count; the schedule's update counter,
  which the constant rate lacks, set to Adam's count), the source's ``"train"`` metric records
  up to ``step`` that fall on ``config.log_every``, and ``config``'s ``config.json``.
  ``train_rl(config)`` (``metajax train``) then resumes at ``step`` and ends where a run of
  ``config`` from step 0 would. The folder is built beside its destination and renamed into
  place, so a failure leaves nothing behind.

  Args:
    source_dir: a run folder of :func:`train_rl` (RL²) holding the checkpoint ``step`` (a run
      keeps only its newest checkpoints: ``Checkpointer``'s ``keep``, 3).
    step: the checkpoint to branch at, at most ``learning_rate_decay_begin`` and
      ``meta_steps``.
    config: the decaying config; its ``run_dir`` (the new folder) must not exist. It must
      equal the source's ``config.json`` except in ``algorithm_kwargs``'
      ``learning_rate_decay_begin``/``learning_rate_decay_steps`` and in ``meta_steps``,
      ``run_dir``, ``name``, ``log_every``, ``checkpoint_every``, ``test_tasks``,
      ``adapt_steps``, ``adapt_step_sizes`` (the keys a resume may change).

  Returns:
    The new run folder.

  Raises:
    ValueError: the configs differ elsewhere (naming the keys and both values), ``config`` is
      not an RL² config with ``learning_rate_decay_steps`` set, the source is not an RL² run,
      ``step`` is not a saved checkpoint, is after ``learning_rate_decay_begin``, after
      ``meta_steps`` or after the source's own decay began, or the run folder exists.
    TypeError: ``step`` is not an integer.
    FileNotFoundError, CheckpointError: the source run or its checkpoint cannot be read.

  Example:
    >>> from metajax.train import load_config
    >>> config = load_config("configs/rl2_bandits.py:k10n100",
    ...                      ["run_dir=runs/k10_decay"])  # doctest: +SKIP
    >>> branch_rl_run("runs/k10_constant", 6000, config)  # doctest: +SKIP
    PosixPath('runs/k10_decay')
  """
  import numbers
  import os
  import shutil

  import optax

  from metajax.train.checkpoint import Checkpointer
  from metajax.train.metrics_log import read_metrics

  if not isinstance(config, RLConfig) or config.algorithm != "rl2":
    raise ValueError(f"branch_rl_run needs an RL² RLConfig (algorithm='rl2'), got "
                     f"{type(config).__name__} with algorithm "
                     f"{getattr(config, 'algorithm', None)!r}")
  if isinstance(step, bool) or not isinstance(step, numbers.Integral):
    raise TypeError(f"step={step!r} must be an int, the step of a saved checkpoint")
  step, source, config = int(step), Path(source_dir), config.validated()
  _training_mesh(config)  # devices this machine lacks: refused now, not at the first train_rl
  target = Path(config.run_dir)
  source_config = _read_config(source)
  if source_config.algorithm != "rl2":
    raise ValueError(f"{source} is a {source_config.algorithm} run; branch_rl_run branches "
                     "RL² runs")
  old, new = json.loads(source_config.to_json()), json.loads(config.to_json())
  old_kwargs, new_kwargs = old.pop("algorithm_kwargs"), new.pop("algorithm_kwargs")
  if new_kwargs.get("learning_rate_decay_steps") is None:
    raise ValueError("branch_rl_run needs a config with algorithm_kwargs."
                     "learning_rate_decay_steps set (the schedule the branch adds), e.g. "
                     "algorithm_kwargs.learning_rate_decay_steps=1000")
  begin = new_kwargs.get("learning_rate_decay_begin", 0)
  if step < 0:
    raise ValueError(f"step={step} must be >= 0, the step of a saved checkpoint")
  if step > begin:
    raise ValueError(f"step={step} is after learning_rate_decay_begin={begin}, from which the "
                     f"two schedules differ; branch at a step <= {begin} or set "
                     f"algorithm_kwargs.learning_rate_decay_begin={step}")
  if step > config.meta_steps:
    raise ValueError(f"step={step} is after meta_steps={config.meta_steps}, where the run "
                     f"would have stopped; set meta_steps >= {step}")
  source_begin = old_kwargs.get("learning_rate_decay_begin", 0)
  if old_kwargs.get("learning_rate_decay_steps") is not None and source_begin < step:
    raise ValueError(f"{source} decays its learning rate from step {source_begin}, before "
                     f"step={step}; branch from a checkpoint its rate was still constant at")
  changed = [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in sorted(set(old) | set(new))
             if k not in _RESUME_FREE_KEYS and old.get(k) != new.get(k)]
  changed += [f"algorithm_kwargs.{k} ({old_kwargs.get(k)!r} -> {new_kwargs.get(k)!r})"
              for k in sorted(set(old_kwargs) | set(new_kwargs))
              if k not in _SCHEDULE_KEYS and old_kwargs.get(k) != new_kwargs.get(k)]
  if changed:
    raise ValueError(f"{source}/config.json and the new config differ in {', '.join(changed)}; "
                     "a branch may change only the learning-rate schedule")
  if target.exists():
    raise ValueError(f"run_dir {target} exists; pick a new folder for the branch")
  saved = Checkpointer(source / "checkpoints").steps()
  if step not in saved:
    raise ValueError(f"step={step} is not a saved checkpoint of {source} (saved: {saved}; a "
                     "run keeps only its newest checkpoints)")

  source_state, _ = _restore(source, _build_run(source_config).state, step)
  template = _build_run(config).state
  is_state = lambda x: isinstance(x, optax.ScaleByAdamState | optax.ScaleByScheduleState)
  adam = [s for s in jax.tree.leaves(source_state.opt_state, is_leaf=is_state)
          if isinstance(s, optax.ScaleByAdamState)]
  if len(adam) != 1:
    raise ValueError(f"expected one Adam state in {source}'s optimizer, found {len(adam)}")

  def fill(node):
    if isinstance(node, optax.ScaleByAdamState):
      return adam[0]
    if isinstance(node, optax.ScaleByScheduleState):
      return optax.ScaleByScheduleState(count=adam[0].count)
    return node

  state = template._replace(step=source_state.step, params=source_state.params,
                            opt_state=jax.tree.map(fill, template.opt_state, is_leaf=is_state))
  kept = [r for r in read_metrics(source) if r.get("split") == "train"
          and isinstance(r.get("step"), int) and r["step"] <= step
          and r["step"] % config.log_every == 0]
  building = target.with_name(f".{target.name}.branch-{os.getpid()}")
  shutil.rmtree(building, ignore_errors=True)
  building.mkdir(parents=True)
  try:
    checkpointer = Checkpointer(building / "checkpoints")
    try:
      checkpointer.save(step, state)
    finally:
      checkpointer.close()
    (building / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    (building / "config.json").write_text(config.to_json())
    os.rename(building, target)
  except BaseException:
    shutil.rmtree(building, ignore_errors=True)
    raise
  return target


def _read_config(run_dir: str | Path) -> RLConfig:
  """The validated :class:`RLConfig` of a run folder's ``config.json``."""
  path = Path(run_dir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found; pass a run folder written by 'metajax train'")
  saved = json.loads(path.read_text())
  if "env" not in saved:
    raise ValueError(f"{run_dir} is not an RL run (its config has no 'env'); evaluate few-shot "
                     "runs with metajax.train.evaluate_run")
  fields = {f.name for f in dataclasses.fields(RLConfig)}
  config = RLConfig(**{k: v for k, v in saved.items() if k in fields})
  if config.adapt_step_sizes is not None:
    config = config.replace(adapt_step_sizes=tuple(config.adapt_step_sizes))
  return config.validated()


def _restore(run_dir: str | Path, template: Any, checkpoint: str | int) -> tuple[Any, int]:
  """``(state, step)`` of checkpoint ``"last"`` or a saved step, restored like ``template``."""
  from metajax.train.checkpoint import Checkpointer

  checkpointer = Checkpointer(Path(run_dir) / "checkpoints")
  try:
    steps = checkpointer.steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoints in {Path(run_dir) / 'checkpoints'}")
    if checkpoint == "last":
      step = steps[-1]
    elif isinstance(checkpoint, int) and not isinstance(checkpoint, bool) and checkpoint in steps:
      step = checkpoint
    else:
      raise ValueError(f"checkpoint={checkpoint!r} is not 'last' or a saved step of {run_dir} "
                       f"({steps})")
    return checkpointer.restore(step, template), step
  finally:
    checkpointer.close()
