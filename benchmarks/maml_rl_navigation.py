"""MAML-RL on 2D point navigation (Finn et al., 2017, Section 5.3 / Figure 5), small budget.

Meta-trains MAML-RL (REINFORCE inner step with a linear feature baseline, unbiased
meta-gradient, Adam outer step), a policy pretrained on all goals with the same outer loop but
no inner step (``steps=0``: a plain policy gradient on the task mixture), and keeps a random
initialisation; then adapts each with 0-3 policy-gradient steps (alpha as in training) on the
same new goals and prints the mean return per adaptation step (mean +- 95% CI over goals).

    python benchmarks/maml_rl_navigation.py --minutes 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np
import optax

import metajax
import metajax.envs as envs
from metajax.algorithms.maml_rl import make_meta_rl_step, maml_rl, mlp_policy
from metajax.envs.bandit_baselines import mean_ci


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--minutes", type=float, default=3.0, help="budget per trained model")
  parser.add_argument("--horizon", type=int, default=100)
  parser.add_argument("--episodes", type=int, default=20)
  parser.add_argument("--tasks-per-step", type=int, default=20)
  parser.add_argument("--inner-lr", type=float, default=0.1)
  parser.add_argument("--learning-rate", type=float, default=3e-3,
                      help="outer Adam (1e-2 diverged after ~220 steps on 2026-11-30)")
  parser.add_argument("--score-term", action="store_true",
                      help="the unbiased estimator's inner score term (off: the paper's)")
  parser.add_argument("--hidden", type=int, default=100)
  parser.add_argument("--test-goals", type=int, default=100)
  parser.add_argument("--adapt-steps", type=int, default=3)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()

  env = envs.point_navigation(horizon=args.horizon)
  policy = mlp_policy(env, hidden=(args.hidden, args.hidden))
  common = dict(inner_lr=args.inner_lr, episodes=args.episodes, gamma=0.99,
                score_term=args.score_term)
  trained = {}
  for name, steps in (("maml", 1), ("pretrained", 0)):
    learner = maml_rl(env, policy, steps=steps, **common)
    optimizer = optax.adam(args.learning_rate)
    state = metajax.init_meta_state(learner, optimizer)
    step = make_meta_rl_step(learner, env, optimizer, tasks_per_step=args.tasks_per_step)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < 60 * args.minutes:
      state, metrics = step(state, jax.random.key(1))
      count += 1
      if count % 25 == 0:
        print(f"{name} step {count}: pre {float(metrics['pre_return']):.1f} post "
              f"{float(metrics['post_return']):.1f}", flush=True)
    trained[name] = (state.params, count)
  evaluator = maml_rl(env, policy, steps=args.adapt_steps, **common)
  trained["random"] = (evaluator.init(), 0)
  goals = envs.sample_tasks(env, jax.random.key(123), args.test_goals)
  evaluate = jax.jit(jax.vmap(lambda p, t, k: evaluator.evaluate(p, t, k)["returns"],
                              in_axes=(None, 0, 0)))
  keys = jax.random.split(jax.random.key(9), args.test_goals)
  results = {}
  print(f"\nmean return on {args.test_goals} new goals after 0..{args.adapt_steps} "
        f"policy-gradient steps (load average {os.getloadavg()[0]:.1f}):")
  for name, (params, count) in trained.items():
    returns = np.asarray(evaluate(params, goals, keys))
    results[name] = {"meta_steps": count,
                     "returns": [mean_ci(returns[:, k]) for k in range(returns.shape[1])]}
    row = "  ".join(f"{m:7.2f} +- {c:.2f}" for m, c in results[name]["returns"])
    print(f"  {name:10s} ({count:4d} steps)  {row}")
  if args.out:
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results,
                                          "load_average": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
  main()
