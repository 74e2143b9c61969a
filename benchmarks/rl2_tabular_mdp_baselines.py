"""Random, PSRL, (epsilon-)greedy, myopic, state-blind, oracle on RL²'s random tabular MDPs.

Scores the strategies of ``metajax.envs.mdp_baselines`` on the same MDPs, for ``--episodes`` (n)
10-step episodes per trial, each from state 0: total reward per trial, mean +- 95% CI over tasks.
The MDPs are ``tabular_mdp(states=10, actions=5, episode_length=10)``, as
``configs/rl2_tabular_mdp.py``.

Same tasks as RL²'s final test: this script takes them from ``metajax.train.rl_test_tasks``,
which the trainer's test uses too, for ``--seed`` (the run's config seed, default 0) and
``--tasks`` (its ``test_tasks``, default 1000). The MDPs do not depend on n, so every n scores
the same 1,000 MDPs.
Only the MDPs are shared: rewards and transitions here are drawn by NumPy, independently of the
RL² rollout's JAX draws.

Strategies: ``random``; ``psrl`` and ``greedy`` (posterior-mean MDP, re-solved each episode) with
the environment's own prior (Dirichlet(1) transitions, N(1, 1) mean rewards, unit noise: exact);
``epsilon_greedy_<eps>`` for each ``--epsilons`` value; ``myopic``, the action of highest
posterior-mean reward in each state, blind to transitions; ``state_blind``, one action in
every state, the one of highest posterior-mean reward with all states' rewards pooled;
``psrl_prior_mean0`` and
``greedy_prior_mean0`` with a N(0, 1) prior on the mean rewards instead, the default of Osband's
TabulaRL agents, which the RL² authors' baseline script appears to use (see the module docstring
of ``metajax/envs/mdp_baselines.py``); ``oracle``, the optimal policy of each known MDP, simulated.
``exact`` holds the exact expectations over these MDPs of the oracle and of the random policy
(dynamic programming, no simulation noise).

    python benchmarks/rl2_tabular_mdp_baselines.py --episodes 10 \\
        --out benchmarks/results/rl2_tabular_mdp_baselines_n10.json

Reference: Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
arXiv:1611.02779, 2016, Section 3.2 and Table 2 (no text copy of that table was found while
writing this script; its numbers are not reproduced here).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from metajax.envs import mdp_baselines as mb
from metajax.envs.bandit_baselines import mean_ci
from metajax.train import RLConfig, rl_test_tasks

STATES, ACTIONS, EPISODE_LENGTH = 10, 5, 10


def rl2_test_tasks(seed: int, count: int):
  """The MDPs of RL²'s final test for a run with config ``seed`` and ``test_tasks=count``."""
  config = RLConfig(algorithm="rl2", env="tabular_mdp", seed=seed, test_tasks=count,
                    env_kwargs={"states": STATES, "actions": ACTIONS,
                                "episode_length": EPISODE_LENGTH})
  return rl_test_tasks(config)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--episodes", type=int, default=10, help="episodes per trial (n)")
  parser.add_argument("--tasks", type=int, default=1000, help="MDPs (RL²'s test_tasks)")
  parser.add_argument("--seed", type=int, default=0,
                      help="the RL² run's config seed (tasks) and the simulation's seed")
  parser.add_argument("--epsilons", default="0.05,0.1,0.2",
                      help="comma-separated exploration rates of epsilon-greedy")
  parser.add_argument("--out", default=None, help="JSON file for the results")
  args = parser.parse_args()

  tasks = rl2_test_tasks(args.seed, args.tasks)
  strategies = {"random": mb.random_policy, "psrl": mb.psrl(), "greedy": mb.greedy()}
  for eps in (float(e) for e in args.epsilons.split(",") if e.strip()):
    strategies[f"epsilon_greedy_{eps:g}"] = mb.epsilon_greedy(eps)
  strategies["myopic"] = mb.myopic()
  strategies["state_blind"] = mb.state_blind()
  strategies["psrl_prior_mean0"] = mb.psrl(reward_mean=0.0)
  strategies["greedy_prior_mean0"] = mb.greedy(reward_mean=0.0)
  strategies["oracle"] = mb.oracle(tasks, EPISODE_LENGTH)

  print(f"{args.tasks} MDPs (RL²'s final-test tasks for seed {args.seed}), n={args.episodes} "
        f"episodes of {EPISODE_LENGTH} steps; total reward per trial, mean +- 95% CI")
  results = {}
  for name, choose in strategies.items():
    start = time.perf_counter()
    totals = mb.play(tasks, args.episodes, choose, episode_length=EPISODE_LENGTH, seed=args.seed)
    mean, ci95 = mean_ci(totals)
    results[name] = {"mean": mean, "ci95": ci95, "seconds": time.perf_counter() - start}
    print(f"  {name:>22}: {mean:8.2f} +- {ci95:.2f}", flush=True)

  uniform = np.full((args.tasks, EPISODE_LENGTH, STATES, ACTIONS), 1.0 / ACTIONS)
  exact = {
      "oracle": float(args.episodes * mb.oracle_value(tasks, EPISODE_LENGTH).mean()),
      "random": float(args.episodes * mb.policy_value(tasks, uniform).mean()),
  }
  print(f"  exact expectations over these MDPs: oracle {exact['oracle']:.2f}, "
        f"random {exact['random']:.2f}")
  out = {
      "episodes": args.episodes, "tasks": args.tasks, "seed": args.seed,
      "env": {"states": STATES, "actions": ACTIONS, "episode_length": EPISODE_LENGTH,
              "reward_mean": 1.0, "reward_std": 1.0},
      "task_source": "metajax.train.rl_test_tasks (sample_tasks(env, "
                     "jax.random.split(jax.random.key(seed + 2))[0], tasks)): the MDPs of "
                     "RL²'s final test (metajax.train.rl) for config seed=seed, "
                     "test_tasks=tasks",
      "results": results, "exact": exact,
      "load_average": os.getloadavg()[0], "jax": jax.__version__, "args": vars(args),
  }
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
