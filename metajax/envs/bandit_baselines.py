"""Reference strategies for Bernoulli bandits: random, UCB1, Thompson, Gittins, Bayes-optimal.

Host-side NumPy, vectorised over tasks: these are the yardsticks RL² is measured
against (RL² Table 1), run on the *same* arm means as the learner.

The Bayes-optimal strategy for a finite horizon ``n`` and independent Beta(1, 1)
priors is computed exactly by dynamic programming over posterior counts; arms are
exchangeable under the prior, so states are sorted tuples of ``(successes,
failures)`` per arm. The states are counted exactly before they are enumerated (multisets of
``k`` counts with ``sum(s + f) <= n``): fine for ``k=5, n=10`` (0.1 s) and ``k=2, n=100``,
infeasible for ``k=5, n=100`` or ``k=50, n=100`` (use Thompson sampling or the Gittins index,
:func:`gittins`, there).

The Gittins index of a Beta(1 + s, 1 + f) posterior is computed for every state at once by
calibration against a known arm (see :func:`gittins_indices`): one backward pass over the
posterior tree per retirement reward, vectorised over a grid of retirement rewards, with the
root between grid points bracketed by the convexity of the continuation advantage.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from metajax.core._checks import check_steps

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


class GittinsTable(NamedTuple):
  """Gittins indices of a Bernoulli arm's Beta(1 + s, 1 + f) posteriors, ``s + f <= max_count``.

  Attributes:
    index: ``[max_count + 1, max_count + 1]`` float64; ``index[s, f]`` is the index after ``s``
      successes and ``f`` failures (uniform prior) for ``s + f <= max_count``, NaN elsewhere.
    gamma: the discount factor.
    depth: pulls looked ahead past the deepest tabulated state before the tree is truncated.
    bracket_error: the largest half-width of the interval, proved by convexity, that holds the
      truncated problem's index around ``index`` (the retirement-reward grid's error).
    truncation_error: a bound on how far the truncated problem's index lies *below* the
      infinite-horizon one, ``gamma**depth / (4 (1 - gamma) sqrt(max_count + depth + 3))``.
  """

  index: np.ndarray
  gamma: float
  depth: int
  bracket_error: float
  truncation_error: float


_GITTINS_CELL_LIMIT = 3e9  # (states in the truncated tree) x (grid points): ~1 minute of NumPy


def gittins_indices(max_count: int, *, gamma: float, depth: int | None = None, grid: int = 128,
                    tol: float = 1e-4) -> GittinsTable:
  """Gittins indices of a Bernoulli arm under a uniform prior, for every posterior up to a size.

  The index of a posterior state is the retirement reward ``lam`` per pull at which pulling the
  arm (and retiring optimally later) and retiring now for ``lam / (1 - gamma)`` are equally good
  (Gittins's calibration against a known arm). For a fixed ``lam`` one backward pass of dynamic
  programming over the posterior tree ``(s, f)`` gives, for *every* state, the advantage
  ``A(lam)`` of pulling over retiring; the pass is vectorised over ``grid + 1`` values of ``lam``
  in ``[0, 1]`` and also carries ``dA/dlam``. ``A`` is convex and piecewise linear in ``lam``
  with slope <= -1, so between the two grid points that bracket its root the chord gives an upper
  bound and the tangents a lower bound; the table holds the midpoint (``bracket_error`` is the
  largest half-width).

  The tree is truncated at ``s + f = max_count + depth``: there the arm is valued as if learning
  stopped, ``max(lam, mean) / (1 - gamma)``, a lower bound that is at most
  ``1 / (4 (1 - gamma) sqrt(s + f + 3))`` below the perfect-information upper bound
  ``E[max(lam, p)] / (1 - gamma)``. Discounted back ``depth`` pulls this moves ``A`` by at most
  ``truncation_error`` and, since ``dA/dlam <= -1``, the index by at most as much (downwards).
  ``depth=None`` picks the smallest depth with ``truncation_error <= tol``. Results are cached
  per ``(max_count, gamma, depth, grid)``.

  Args:
    max_count: tabulate states with ``s + f <= max_count``.
    gamma: discount factor in (0, 1).
    depth: look-ahead past ``max_count`` before truncation; ``None`` chooses it from ``tol``.
    grid: retirement rewards per pass (``grid + 1`` points on ``[0, 1]``).
    tol: target truncation error when ``depth`` is None.

  Returns:
    A :class:`GittinsTable` (its ``index`` array is read-only and shared by the cache).

  Raises:
    ValueError: if an argument is out of range, or the truncated tree is too large to compute
      here (``(max_count + depth)**2 / 2 * (grid + 1)`` above 3e9 cells).

  Example:
    >>> table = gittins_indices(2, gamma=0.9)
    >>> round(float(table.index[0, 0]), 4)  # Gittins et al. (2011): 0.7029
    0.7029

  References:
    Gittins, "Bandit Processes and Dynamic Allocation Indices", JRSS B 41(2), 1979;
    Gittins, Glazebrook & Weber, "Multi-armed Bandit Allocation Indices", 2nd ed., Wiley, 2011
    (calibration and the Bernoulli/Beta tables, ch. 8).
  """
  if not isinstance(max_count, (int, np.integer)) or max_count < 0:
    raise ValueError(f"max_count must be an integer >= 0, got {max_count!r}; pass the largest "
                     "s + f (successes + failures) to tabulate, e.g. pulls - 1.")
  if not 0.0 < gamma < 1.0:
    raise ValueError(f"gamma must be in (0, 1), got {gamma!r}: the Gittins index is defined for "
                     "discounted rewards; use e.g. gamma=1 - 1/pulls for a horizon of pulls.")
  if not isinstance(grid, (int, np.integer)) or grid < 2:
    raise ValueError(f"grid must be an integer >= 2, got {grid!r}; 128 is a good default.")
  if depth is None:
    if not tol > 0:
      raise ValueError(f"tol must be > 0, got {tol!r}; e.g. tol=1e-4.")
    need = math.log(4.0 * tol * (1.0 - gamma) * math.sqrt(max_count + 3.0)) / math.log(gamma)
    depth = max(1, math.ceil(need))
  elif not isinstance(depth, (int, np.integer)) or depth < 1:
    raise ValueError(f"depth must be an integer >= 1 or None, got {depth!r}.")
  horizon = int(max_count) + int(depth)
  cells = horizon * horizon / 2 * (grid + 1)
  if cells > _GITTINS_CELL_LIMIT:
    raise ValueError(
        f"gittins_indices(max_count={max_count}, gamma={gamma}) needs a posterior tree of depth "
        f"{horizon} x {grid + 1} retirement rewards = {cells:.1e} cells (limit "
        f"{_GITTINS_CELL_LIMIT:.0e}); lower gamma, pass a smaller depth (the truncation error "
        "bound grows as gamma**depth), or a coarser grid.")
  return _gittins_table(int(max_count), float(gamma), int(depth), int(grid))


@functools.lru_cache(maxsize=8)
def _gittins_table(max_count: int, gamma: float, depth: int, grid: int) -> GittinsTable:
  horizon = max_count + depth
  lam = np.linspace(0.0, 1.0, grid + 1)
  scale = 1.0 / (1.0 - gamma)
  retire = lam * scale  # value of retiring for lam per pull forever
  mean = ((1.0 + np.arange(horizon + 1)) / (horizon + 2.0))[:, None] * scale
  value = np.maximum(retire, mean)  # learning stops at the truncation depth
  slope = np.where(retire >= mean, scale, 0.0)  # d value / d lam
  index = np.full((max_count + 1, max_count + 1), np.nan)
  bracket = 0.0
  for total in range(horizon - 1, -1, -1):  # diagonals s + f = total, s = 0..total
    p = ((1.0 + np.arange(total + 1)) / (total + 2.0))[:, None]
    pull = p * (1.0 + gamma * value[1:]) + (1.0 - p) * (gamma * value[:-1])
    pull_slope = gamma * (p * slope[1:] + (1.0 - p) * slope[:-1])
    if total <= max_count:
      estimate, half_width = _bracketed_root(lam, pull - retire, pull_slope - scale)
      s = np.arange(total + 1)
      index[s, total - s] = estimate
      bracket = max(bracket, float(half_width.max()))
    keep = pull > retire
    value = np.where(keep, pull, retire)
    slope = np.where(keep, pull_slope, scale)
  index.setflags(write=False)
  truncation = gamma**depth / (4.0 * (1.0 - gamma) * math.sqrt(horizon + 3.0))
  return GittinsTable(index, gamma, depth, bracket, truncation)


def _bracketed_root(lam, advantage, advantage_slope):
  """Root of each row's convex, decreasing piecewise-linear advantage, sampled on ``lam``.

  Returns the midpoint and half-width of ``[tangent root, chord root]``, which holds the root.
  """
  rows = np.arange(advantage.shape[0])
  j = np.clip((advantage > 0).sum(1) - 1, 0, len(lam) - 2)
  lo, hi = lam[j], lam[j + 1]
  a_lo, a_hi = advantage[rows, j], advantage[rows, j + 1]
  upper = lo + a_lo * (hi - lo) / (a_lo - a_hi)
  lower = np.maximum(lo - a_lo / advantage_slope[rows, j], hi - a_hi / advantage_slope[rows, j + 1])
  lower = np.clip(lower, lo, upper)
  return 0.5 * (lower + upper), 0.5 * (upper - lower)


def gittins(pulls: int, *, gamma: float | None = None, depth: int | None = None,
            grid: int = 128) -> Strategy:
  """The Gittins-index strategy for Bernoulli arms with uniform priors.

  Pulls the arm whose Beta(1 + s, 1 + f) posterior has the largest Gittins index (ties broken
  uniformly at random), with indices from :func:`gittins_indices`, computed once per setting
  and cached. The Gittins index policy is Bayes-optimal for the *discounted infinite-horizon*
  problem (Gittins, 1979); on a horizon of ``pulls`` it is an approximation whose quality depends
  on ``gamma``. The default ``gamma = 1 - 1/pulls`` makes the effective horizon ``1/(1 - gamma)``
  equal to the trial length; it is a heuristic, not tuned. Duan et al. (2016) do not state their
  discount: they "follow the practical approximations described in Gittins et al. (2011),
  Chakravorty & Mahajan (2013), and Whittle (1982), and choose the best-performing approximation
  for each setup".

  Args:
    pulls: pulls per trial (the table covers every state reachable in ``pulls`` pulls).
    gamma: discount factor in (0, 1); ``None`` for ``1 - 1/pulls`` (0.5 when ``pulls`` is 1).
    depth: truncation look-ahead for :func:`gittins_indices` (``None``: error below 1e-4).
    grid: retirement rewards per dynamic-programming pass.

  Returns:
    ``choose(counts, t, rng) -> arms`` for :func:`play`.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> total = play(rng.random((500, 5)), 10, gittins(10), seed=1)
    >>> total.shape
    (500,)

  References:
    Gittins, "Bandit Processes and Dynamic Allocation Indices", JRSS B 41(2), 1979;
    Gittins, Glazebrook & Weber, "Multi-armed Bandit Allocation Indices", 2nd ed., 2011;
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
    arXiv:1611.02779, 2016 (Table 1 uses the Gittins index as a baseline).
  """
  pulls = check_steps(pulls, "pulls", minimum=1)
  if gamma is None:
    gamma = 1.0 - 1.0 / max(pulls, 2)
  index = gittins_indices(pulls - 1, gamma=gamma, depth=depth, grid=grid).index

  def choose(counts: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
    if t >= pulls:
      raise ValueError(f"pull index t={t} but this Gittins strategy was built for pulls={pulls}; "
                       "build it with gittins(pulls=...) for the trial length you play.")
    score = index[counts[..., 0], counts[..., 1]]
    best = score >= score.max(axis=1, keepdims=True)
    return np.argmax(best * rng.random(score.shape), axis=1)  # uniform among the best

  return choose


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
  states = _posterior_state_count(arms, pulls, limit=3e6)
  if states > 3e6:
    raise ValueError(
        f"bayes_optimal(arms={arms}, pulls={pulls}) would enumerate more than {states:.1e} "
        "posterior states (limit 3e6); the exact dynamic programme is for small k and n "
        "(e.g. k=5, n=10 or k=2, n=100); use gittins, thompson or ucb1 for larger problems."
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


def _posterior_state_count(arms: int, pulls: int, limit: float) -> float:
  """Number of sorted per-arm ``(s, f)`` tuples with ``sum(s + f) <= pulls`` (stops past limit).

  Counts multisets of ``arms`` items from the types ``(s, f)`` weighted by ``s + f``, one weight
  class at a time: ``m`` items from the ``w + 1`` types of weight ``w`` can be chosen in
  ``C(w + m, m)`` ways. Once the count passes ``limit`` it returns the partial count (a lower
  bound that is already above the limit).
  """
  count = np.zeros((arms + 1, pulls + 1))  # count[j, t]: multisets of j items of total weight t
  count[0, 0] = 1.0
  for weight in range(pulls + 1):
    most = arms if weight == 0 else min(arms, pulls // weight)
    new = count.copy()
    for m in range(1, most + 1):
      new[m:, m * weight:] += math.comb(weight + m, m) * count[:arms + 1 - m,
                                                               :pulls + 1 - m * weight]
    count = new
    if count[arms].sum() > limit:
      break
  return float(count[arms].sum())


def _sorted_index(state, a):
  """Index of arm ``a``'s counts in ``sorted(state)`` (any equal entry is equivalent)."""
  return sorted(state).index(state[a])


def mean_ci(values: np.ndarray) -> tuple[float, float]:
  """Mean and the half-width of its normal-approximation 95% confidence interval."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(len(values)))
