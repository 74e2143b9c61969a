"""RL² on Bernoulli bandits against random, UCB1, Thompson sampling, Gittins and Bayes-optimal.

Trains RL² (GRU + PPO) on k-armed, n-pull bandits with arm means ~ U[0, 1], then scores it and
the baselines on the *same* fresh tasks (total reward per trial, mean +- 95% CI). The exact
finite-horizon Bayes-optimal value (dynamic programming, Beta(1, 1) priors) is printed where the
state space is small enough (e.g. k=5, n=10). The Gittins-index strategy uses the discount
``--gittins-gamma`` (default 1 - 1/n). ``--baselines-only`` skips RL² and scores only the
baselines, on the same tasks the full run would use for the same ``--seed``/``--eval-tasks``.

    python benchmarks/rl2_bandits.py --arms 5 --pulls 10 --minutes 3
    python benchmarks/rl2_bandits.py --arms 5 --pulls 100 --baselines-only
    python benchmarks/rl2_bandits.py --run runs/rl2_bandits_k5n100   # a trained run's policy

``rl2`` samples its actions from the policy, ``rl2_greedy`` takes the most probable one.

Reference: Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
2016, Table 1 (their numbers were not re-checked here; compare with the paper).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

import metajax.envs as envs
from metajax.algorithms.rl2 import rl2
from metajax.envs import bandit_baselines as bb


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arms", type=int, default=5)
  parser.add_argument("--pulls", type=int, default=10)
  parser.add_argument("--minutes", type=float, default=3.0, help="training time budget")
  parser.add_argument("--max-steps", type=int, default=100_000)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--tasks-per-step", type=int, default=128)
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  parser.add_argument("--gae-lambda", type=float, default=0.3)
  parser.add_argument("--entropy-coef", type=float, default=0.01)
  parser.add_argument("--reward-scale", type=float, default=1.0,
                      help="rl2's reward_scale (value targets and advantages)")
  parser.add_argument("--eval-tasks", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="JSON file for the results")
  parser.add_argument("--baselines-only", action="store_true",
                      help="score only the baselines (no RL² training)")
  parser.add_argument("--gittins-gamma", type=float, default=None,
                      help="discount of the Gittins index (default 1 - 1/pulls)")
  parser.add_argument("--run", default=None, metavar="RUN_DIR",
                      help="score the last checkpoint of a 'metajax train configs/rl2_bandits.py' "
                           "run instead of training here (its arms and pulls are used)")
  args = parser.parse_args()
  if args.baselines_only:
    _baselines_only(args)
    return
  if args.run:
    _score_run(args)
    return

  env = envs.bernoulli_bandit(arms=args.arms, pulls=args.pulls)
  learner = rl2(env, episodes=args.pulls, hidden=args.hidden, tasks_per_step=args.tasks_per_step,
                minibatches=4, learning_rate=args.learning_rate, gamma=1.0,
                gae_lambda=args.gae_lambda, entropy_coef=args.entropy_coef,
                reward_scale=args.reward_scale)
  learner.check_task(env.sample_task(jax.random.key(args.seed)))
  state = learner.init(jax.random.key(args.seed))
  train_key = jax.random.key(args.seed + 1)
  start = time.perf_counter()
  state, metrics = learner.train_step(state, train_key)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  steps = 1
  deadline = start + 60 * args.minutes
  while steps < args.max_steps and time.perf_counter() < deadline:
    state, metrics = learner.train_step(state, train_key)
    steps += 1
    if steps % 200 == 0:
      print(f"step {steps}: trial return {float(metrics['trial_return']):.3f}, entropy "
            f"{float(metrics['entropy']):.3f}", flush=True)
  jax.block_until_ready(state)
  train_s = time.perf_counter() - start

  results, exact = _score(args, env, learner, state.params)
  env_steps = steps * args.tasks_per_step * learner.trial_length
  print(f"\nk={args.arms} n={args.pulls}: {steps} PPO steps ({env_steps:,} env steps) in "
        f"{train_s:.0f} s (first step with compilation {compile_s:.0f} s), load average "
        f"{os.getloadavg()[0]:.1f}")
  _print_results(args, results, exact)
  if args.out:
    Path(args.out).write_text(json.dumps({
        "arms": args.arms, "pulls": args.pulls, "steps": steps, "train_seconds": train_s,
        "load_average": os.getloadavg()[0], "eval_tasks": args.eval_tasks,
        "exact_bayes_optimal": exact, "args": vars(args),
        "results": {k: {"mean": m, "ci95": c} for k, (m, c) in results.items()}}, indent=2))


def _score(args: argparse.Namespace, env, learner, params) -> tuple[dict, float | None]:
  """RL² (actions sampled, and greedy) and the baselines on the same fresh tasks."""
  tasks = envs.sample_tasks(env, jax.random.key(10_000 + args.seed), args.eval_tasks)
  results = {name: bb.mean_ci(np.asarray(learner.evaluate(params, jax.random.key(7), tasks,
                                                          greedy=greedy)))
             for name, greedy in (("rl2", False), ("rl2_greedy", True))}
  baselines, exact = _score_baselines(args, np.asarray(tasks.means), _gittins_gamma(args))
  return {**results, **baselines}, exact


def _score_run(args: argparse.Namespace) -> None:
  """``--run RUN_DIR``: a trained run's last checkpoint against the baselines."""
  from metajax.train.rl import restore_rl_params

  config, params, step = restore_rl_params(args.run)
  if config.algorithm != "rl2" or config.env != "bernoulli_bandit":
    raise SystemExit(f"--run {args.run}: an RL² bandit run is needed, got algorithm="
                     f"{config.algorithm!r} on env={config.env!r}")
  args.arms, args.pulls = config.env_kwargs["arms"], config.env_kwargs["pulls"]
  env = envs.bernoulli_bandit(arms=args.arms, pulls=args.pulls)
  learner = rl2(env, episodes=config.episodes, **config.algorithm_kwargs)
  results, exact = _score(args, env, learner, params)
  print(f"k={args.arms} n={args.pulls}: {args.run} at step {step} ({config.algorithm_kwargs})")
  _print_results(args, results, exact)
  if args.out:
    Path(args.out).write_text(json.dumps({
        "arms": args.arms, "pulls": args.pulls, "run": str(args.run), "steps": step,
        "config": json.loads(config.to_json()), "eval_tasks": args.eval_tasks,
        "exact_bayes_optimal": exact, "load_average": os.getloadavg()[0],
        "results": {k: {"mean": m, "ci95": c} for k, (m, c) in results.items()}}, indent=2))


def _gittins_gamma(args: argparse.Namespace) -> float:
  """``--gittins-gamma``, or :func:`bb.gittins`'s default ``1 - 1/n``."""
  return args.gittins_gamma if args.gittins_gamma is not None else 1.0 - 1.0 / max(args.pulls, 2)


def _score_baselines(args: argparse.Namespace, means: np.ndarray,
                     gamma: float) -> tuple[dict, float | None]:
  """Random, UCB1, Thompson, Gittins and (where tractable) Bayes-optimal on the tasks' means."""
  strategies = {"random": bb.random_strategy, "ucb1": bb.ucb1, "thompson": bb.thompson,
                "gittins": bb.gittins(args.pulls, gamma=gamma)}
  exact = None
  try:
    strategies["bayes_optimal"], exact = bb.bayes_optimal(args.arms, args.pulls)
  except ValueError as error:
    print(f"(no exact Bayes-optimal policy: {error})")
  results = {name: bb.mean_ci(bb.play(means, args.pulls, choose, seed=1))
             for name, choose in strategies.items()}
  return results, exact


def _print_results(args: argparse.Namespace, results: dict, exact: float | None) -> None:
  print(f"total reward on the same {args.eval_tasks} tasks (mean +- 95% CI):")
  for name, (mean, ci) in results.items():
    print(f"  {name:14s} {mean:7.3f} +- {ci:.3f}")
  if exact is not None:
    print(f"  exact Bayes-optimal expectation over the prior: {exact:.3f}")


def _baselines_only(args: argparse.Namespace) -> None:
  """Random, UCB1, Thompson, Gittins (and Bayes-optimal where tractable) on fresh tasks."""
  env = envs.bernoulli_bandit(arms=args.arms, pulls=args.pulls)
  tasks = envs.sample_tasks(env, jax.random.key(10_000 + args.seed), args.eval_tasks)
  gamma = _gittins_gamma(args)
  start = time.perf_counter()
  table = bb.gittins_indices(args.pulls - 1, gamma=gamma)
  table_s = time.perf_counter() - start
  results, exact = _score_baselines(args, np.asarray(tasks.means), gamma)
  load = os.getloadavg()
  print(f"k={args.arms} n={args.pulls}: baselines only, {args.eval_tasks} fresh tasks (seed "
        f"{args.seed}), load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
  print(f"Gittins table: gamma={gamma:.4f}, look-ahead {table.depth} pulls, grid error "
        f"<= {table.bracket_error:.1e}, truncation error <= {table.truncation_error:.1e}, "
        f"{table_s:.1f} s")
  _print_results(args, results, exact)
  if args.out:
    Path(args.out).write_text(json.dumps({
        "arms": args.arms, "pulls": args.pulls, "baselines_only": True,
        "load_average": load[0], "eval_tasks": args.eval_tasks, "exact_bayes_optimal": exact,
        "gittins": {"gamma": gamma, "depth": table.depth, "table_seconds": table_s,
                    "bracket_error": table.bracket_error,
                    "truncation_error": table.truncation_error},
        "args": vars(args),
        "results": {k: {"mean": m, "ci95": c} for k, (m, c) in results.items()}}, indent=2))


if __name__ == "__main__":
  main()
