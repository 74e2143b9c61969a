"""The sinusoid regression experiment of MAML (Finn et al. 2017, Section 5.1 and Appendix C)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import jax
import numpy as np
import optax

from metajax.algorithms.maml import maml
from metajax.core._checks import check_steps
from metajax.core.meta_learner import MetaLearner
from metajax.core.meta_step import MetaTrainState, evaluate_tasks, init_meta_state, meta_update
from metajax.data.sinusoid import sinusoid_tasks
from metajax.models.mlp import mlp_model
from metajax.train._atomic import write_text_atomically

if TYPE_CHECKING:
  from metajax.train.config import SinusoidConfig

PAPER_K5 = ("MAML paper (Finn et al. 2017, Appendix C), K=5: 0.67 / 0.38 / 0.35 after 1 / 5 / 10 "
            "steps.")


class SinusoidRun(NamedTuple):
  """A finished sinusoid run: the learner, its meta-parameters and the loss history.

  Attributes:
    learner: the MAML :class:`metajax.MetaLearner` (MSE loss, the paper's ``[40, 40]`` MLP).
    params: its meta-parameters after training.
    losses: ``[meta_steps]`` training loss (query MSE after adaptation) of each meta-step.
    seconds: wall-clock seconds of the training loop.

  Example:
    >>> run = train_sinusoid(meta_steps=1000, shots=10)  # doctest: +SKIP
    >>> float(run.losses[-100:].mean())  # doctest: +SKIP

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.1. https://arxiv.org/abs/1703.03400
  """

  learner: MetaLearner
  params: dict
  losses: np.ndarray
  seconds: float


def train_sinusoid(
    *,
    meta_steps: int = 70_000,
    meta_batch: int = 25,
    shots: int = 10,
    inner_lr: float = 0.01,
    inner_steps: int = 1,
    learning_rate: float = 1e-3,
    hidden: Sequence[int] = (40, 40),
    seed: int = 0,
    steps_per_call: int = 1_000,
    progress: bool = False,
) -> SinusoidRun:
  """Meta-trains MAML on sinusoid regression with the paper's hyperparameters.

  Tasks are sampled on device and ``steps_per_call`` meta-steps run inside one
  compiled ``lax.scan``, so Python dispatch does not limit the step rate.

  Args:
    meta_steps: outer iterations (MAML: 70,000).
    meta_batch: tasks per outer iteration (MAML: 25).
    shots: K, support and query points per training task (MAML: 10).
    inner_lr: inner SGD step size alpha (MAML: 0.01).
    inner_steps: inner steps during training (MAML: 1).
    learning_rate: Adam step size of the outer loop (MAML: 1e-3).
    hidden: hidden layer widths of the ReLU MLP (MAML: 40, 40).
    seed: random seed.
    steps_per_call: meta-steps fused into one compiled call.
    progress: show a tqdm progress bar with steps/s and loss.

  Returns:
    A :class:`SinusoidRun`.

  References:
    Finn, Abbeel & Levine, ICML 2017. https://arxiv.org/abs/1703.03400
  """
  meta_steps = check_steps(meta_steps, "meta_steps", minimum=1)
  steps_per_call = min(check_steps(steps_per_call, "steps_per_call", minimum=1), meta_steps)
  key = jax.random.key(seed)
  model = mlp_model(hidden, 1, jax.random.fold_in(key, 0), input_dim=1)
  learner = maml(model, inner_lr=inner_lr, steps=inner_steps, loss="mse")
  optimizer = optax.adam(learning_rate)
  update = meta_update(learner, optimizer, batching="vmap")
  data_key, step_key = jax.random.split(jax.random.fold_in(key, 1))

  def one_step(state: MetaTrainState, _):
    task_key = jax.random.fold_in(data_key, state.step)
    tasks = sinusoid_tasks(task_key, batch_size=meta_batch, shots=shots)
    state, metrics = update(state, tasks, jax.random.fold_in(step_key, state.step))
    return state, metrics["loss"]

  run_chunk = jax.jit(lambda state, n: jax.lax.scan(one_step, state, length=n),
                      static_argnums=1, donate_argnums=0)
  state = init_meta_state(learner, optimizer)
  bar = _progress_bar(meta_steps, progress)
  losses = []
  start = time.perf_counter()
  done = 0
  while done < meta_steps:
    n = min(steps_per_call, meta_steps - done)
    state, chunk_losses = run_chunk(state, n)
    chunk_losses = np.asarray(chunk_losses)
    losses.append(chunk_losses)
    done += n
    if bar is not None:
      bar.update(n)
      bar.set_postfix(loss=f"{chunk_losses.mean():.3f}")
  seconds = time.perf_counter() - start
  if bar is not None:
    bar.close()
  return SinusoidRun(learner, state.params, np.concatenate(losses), seconds)


def _progress_bar(total: int, enabled: bool):
  if not enabled:
    return None
  from tqdm.auto import tqdm

  return tqdm(total=total, desc="meta-train", unit="step", smoothing=0.1)


def adaptation_table(
    run: SinusoidRun,
    *,
    shots: Sequence[int] = (5, 10),
    steps: Sequence[int] = (0, 1, 5, 10),
    num_tasks: int = 1_000,
    queries: int = 100,
    seed: int = 1234,
) -> dict[int, dict[int, tuple[float, float]]]:
  """Mean squared error on new tasks after each number of adaptation steps.

  Each test task is adapted on ``K`` support points with the training inner
  step size and scored on ``queries`` fresh points drawn from the same
  sinusoid, over ``num_tasks`` tasks.

  Args:
    run: a trained :class:`SinusoidRun`.
    shots: values of K.
    steps: numbers of gradient steps at test time.
    num_tasks: test tasks per K (the same tasks for every step count).
    queries: evaluation points per task.
    seed: seed of the test tasks (disjoint from training keys).

  Returns:
    ``{K: {steps: (mean MSE, 95% confidence half-width)}}``.
  """
  table = {}
  for k in shots:
    tasks = sinusoid_tasks(jax.random.key(seed + k), batch_size=num_tasks, shots=k,
                           queries=queries)
    row = {}
    for n in steps:
      losses = evaluate_tasks(run.learner, run.params, tasks, jax.random.key(0), steps=n,
                              batching="vmap")["loss"]
      row[n] = (float(np.mean(losses)), float(1.96 * np.std(losses) / np.sqrt(len(losses))))
    table[k] = row
  return table


def format_table(table: dict[int, dict[int, tuple[float, float]]]) -> str:
  """Markdown table: one row per K, one column per number of steps."""
  steps = sorted(next(iter(table.values())))
  lines = ["| K | " + " | ".join(f"{n} step{'s' if n != 1 else ''}" for n in steps) + " |",
           "|---|" + "---|" * len(steps)]
  for k, row in table.items():
    cells = " | ".join(f"{row[n][0]:.3f} ± {row[n][1]:.3f}" for n in steps)
    lines.append(f"| {k} | {cells} |")
  return "\n".join(lines)


def mean_squared_error_after(run: SinusoidRun, k: int, n_steps: int) -> float:
  """Convenience: mean MSE on 1,000 new K-shot tasks after ``n_steps`` steps."""
  return adaptation_table(run, shots=(k,), steps=(n_steps,))[k][n_steps][0]


def run_sinusoid_experiment(
    config: SinusoidConfig,
    *,
    progress: bool = False,
    report: Callable[[str], None] = print,
    write: bool = True,
) -> dict[int, dict[int, tuple[float, float]]]:
  """The paper's sinusoid table: one model meta-trained per K, each tested on new K-shot tasks.

  What ``metajax sinusoid`` and ``metajax train configs/sinusoid_maml.py`` run.

  Args:
    config: a validated :class:`~metajax.train.config.SinusoidConfig`.
    progress: show a progress bar per model.
    report: receives the progress messages and the final table.
    write: write ``config.json`` and ``sinusoid_table.json`` (atomically) to ``config.run_dir``.

  Returns:
    ``{K: {steps: (mean MSE, 95% confidence half-width)}}`` after 0, 1, 5 and 10 steps.

  Example:
    >>> from metajax.train import SinusoidConfig
    >>> table = run_sinusoid_experiment(SinusoidConfig(shots=(10,)))  # doctest: +SKIP
    >>> mean_mse, ci95 = table[10][10]  # K=10, after 10 steps  # doctest: +SKIP

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    ICML 2017, Section 5.1 and Figure 2; Appendix C gives the K=5 numbers quoted with the table.
  """
  table = {}
  for k in config.shots:
    report(f"MAML on sinusoid regression, meta-trained with K={k}: {config.meta_steps} "
           f"meta-steps, meta-batch {config.meta_batch}, {config.inner_steps} inner step(s) "
           f"alpha={config.inner_lr}, Adam {config.learning_rate} "
           f"(backend: {jax.default_backend()})")
    run = train_sinusoid(meta_steps=config.meta_steps, meta_batch=config.meta_batch, shots=k,
                         inner_lr=config.inner_lr, inner_steps=config.inner_steps,
                         learning_rate=config.learning_rate, seed=config.seed,
                         progress=progress)
    report(f"trained in {run.seconds:.1f} s ({config.meta_steps / run.seconds:.0f} "
           f"meta-steps/s); final training loss {run.losses[-1000:].mean():.3f}")
    table.update(adaptation_table(run, shots=(k,), num_tasks=config.test_tasks))
  report(f"\nMSE on {config.test_tasks} new tasks per K (mean ± 95% CI) after n gradient steps "
         f"(alpha={config.inner_lr}), each row by the model meta-trained with that K:\n\n"
         f"{format_table(table)}\n\n{PAPER_K5}")
  if write:
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(run_dir / "config.json", config.to_json())
    write_text_atomically(run_dir / "sinusoid_table.json",
                          json.dumps(table_to_json(table), indent=2))
  return table


def table_to_json(table: dict[int, dict[int, tuple[float, float]]]) -> dict:
  """``{"K": {"steps": [mean, ci95]}}`` for JSON."""
  return {str(k): {str(n): list(v) for n, v in row.items()} for k, row in table.items()}
