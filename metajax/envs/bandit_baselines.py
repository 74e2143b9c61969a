"""Reference strategies for Bernoulli bandits: random, UCB1, Thompson sampling, Bayes-optimal.

Host-side NumPy, vectorised over tasks: these are the yardsticks RL² is measured
against (RL² Table 1), run on the *same* arm means as the learner.

The Bayes-optimal strategy for a finite horizon ``n`` and independent Beta(1, 1)
priors is computed exactly by dynamic programming over posterior counts; arms are
exchangeable under the prior, so states are sorted tuples of ``(successes,
failures)`` per arm. The state count grows like ``C(2k + n, 2k) / k!``: fine for
``k=5, n=10`` (0.1 s) and ``k=2, n=100``, infeasible for ``k=5, n=100`` (use Thompson
sampling or a Gittins-index approximation there).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

Strategy = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def play(means: np.ndarray, pulls: int, choose: Strategy, seed: int = 0) -> np.ndarray:
  """Total reward of a strategy on each task.

  Args:
    means: ``[tasks, arms]`` success probabilities.
    pulls: pulls per task.
    choose: ``choose(counts, t, rng) -> arms``; ``counts`` is ``[tasks, arms, 2]``
      (successes, failures) so far, ``t`` the 0-based pull index.
    seed: seed of the reward draws and of the strategy's randomness.

  Returns:
    ``[tasks]`` total rewards.
  """
  means = np.asarray(means, np.float64)
  tasks, arms = means.shape
  rng = np.random.default_rng(seed)
  counts = np.zeros((tasks, arms, 2), np.int64)
  total = np.zeros(tasks)
  rows = np.arange(tasks)
  for t in range(pulls):
    arm = choose(counts, t, rng)
    reward = rng.random(tasks) < means[rows, arm]
    counts[rows, arm, 0] += reward
    counts[rows, arm, 1] += ~reward
    total += reward
  return total


def random_strategy(counts: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
  """Uniformly random arm."""
  return rng.integers(0, counts.shape[1], counts.shape[0])


def ucb1(counts: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
  """UCB1 (Auer, Cesa-Bianchi & Fischer, 2002): each arm once, then mean + sqrt(2 ln t / n_i)."""
  pulls = counts.sum(-1)
  untried = pulls == 0
  mean = counts[..., 0] / np.maximum(pulls, 1)
  bonus = np.sqrt(2.0 * math.log(max(t, 1)) / np.maximum(pulls, 1))
  score = np.where(untried, np.inf, mean + bonus)
  score = score + 1e-9 * rng.random(score.shape)  # random tie-break
  return np.argmax(score, axis=1)


def thompson(counts: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
  """Thompson sampling with Beta(1, 1) priors (Thompson, 1933)."""
  return np.argmax(rng.beta(1 + counts[..., 0], 1 + counts[..., 1]), axis=1)


def bayes_optimal(arms: int, pulls: int) -> tuple[Strategy, float]:
  """The exact finite-horizon Bayes-optimal strategy under Beta(1, 1) priors.

  Args:
    arms: number of arms ``k``.
    pulls: horizon ``n``.

  Returns:
    ``(choose, value)``: the strategy for :func:`play`, and its exact expected
    total reward over tasks drawn from the prior (arm means i.i.d. U[0, 1]).

  Example:
    >>> _, value = bayes_optimal(2, 1)
    >>> value
    0.5

  References:
    Gittins, "Bandit Processes and Dynamic Allocation Indices", JRSS B 41(2), 1979;
    Bellman, "A problem in the sequential design of experiments", 1956.
  """
  states = math.comb(2 * arms + pulls, 2 * arms) / math.factorial(arms)
  if states > 3e6:
    raise ValueError(
        f"bayes_optimal(arms={arms}, pulls={pulls}) would enumerate about {states:.1e} "
        "posterior states (limit 3e6); the exact dynamic programme is for small k and n "
        "(e.g. k=5, n=10 or k=2, n=100); use thompson or ucb1 for larger problems."
    )

  @functools.cache
  def value(state: tuple[tuple[int, int], ...]) -> float:
    left = pulls - sum(s + f for s, f in state)
    if left == 0:
      return 0.0
    return max(_q(state, a) for a in range(arms))

  def _q(state, a):
    s, f = state[a]
    p = (1 + s) / (2 + s + f)
    win = tuple(sorted(state[:a] + ((s + 1, f),) + state[a + 1:]))
    lose = tuple(sorted(state[:a] + ((s, f + 1),) + state[a + 1:]))
    return p * (1.0 + value(win)) + (1.0 - p) * value(lose)

  root = tuple((0, 0) for _ in range(arms))
  expected = value(root)

  def choose(counts: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(counts.shape[0], np.int64)
    for i, row in enumerate(counts):
      state = tuple(map(tuple, row.tolist()))
      q = np.array([_q(tuple(sorted(state)), _sorted_index(state, a)) for a in range(arms)])
      best = np.flatnonzero(q >= q.max() - 1e-12)
      out[i] = best[rng.integers(len(best))]
    return out

  return choose, expected


def _sorted_index(state, a):
  """Index of arm ``a``'s counts in ``sorted(state)`` (any equal entry is equivalent)."""
  return sorted(state).index(state[a])


def mean_ci(values: np.ndarray) -> tuple[float, float]:
  """Mean and the half-width of its normal-approximation 95% confidence interval."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(len(values)))
