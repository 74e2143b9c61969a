"""The Gittins-index baseline: published index values, calibration by an independent DP, the
truncation bound, monotonicity, and the exact expected reward of the Gittins policy against the
exact finite-horizon Bayes-optimal value."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from metajax.envs import bandit_baselines as bb

# Gittins index values of a Bernoulli arm with a uniform prior after (successes, failures), as
# tabulated in Gittins, Glazebrook & Weber, "Multi-armed Bandit Allocation Indices" (2011) and
# reproduced in Christian & Griffiths, "Algorithms to Live By" (2016), ch. 2 ("Explore/Exploit"),
# tables for a payoff next time worth 90% / 99% of one now: 0-0 record 0.7029, 1-1 0.6346,
# 2-2 0.6010, nine wins then a loss (9-1) 0.8695 at 90%; 0-0 0.8699 at 99%
# (https://fliphtml5.com/dtqbg/kyih/Algorithms_to_Live_By%3A_The_Computer_Science_of_Human_Decisions/44
# and /45). The one-pull values 1-0 0.8001, 2-0 0.8452, 0-1 0.5001, 0-2 0.3796 at 90% are the
# expected values in the GittinsIndices.jl test suite (github.com/ydalmia/GittinsIndices.jl,
# test_calculate_bernoulli_gittins_multiple), which follows Edwards et al.'s calculation.
PUBLISHED_090 = {(0, 0): 0.7029, (1, 1): 0.6346, (2, 2): 0.6010, (9, 1): 0.8695,
                 (1, 0): 0.8001, (2, 0): 0.8452, (0, 1): 0.5001, (0, 2): 0.3796}


def test_gittins_index_matches_published_tables():
  table = bb.gittins_indices(10, gamma=0.9)
  assert table.truncation_error <= 1e-4 and table.bracket_error <= 1e-3
  for (s, f), published in PUBLISHED_090.items():  # 4-decimal tables: rounding + our bracket
    assert table.index[s, f] == pytest.approx(published, abs=2e-4), (s, f)
  assert bb.gittins_indices(0, gamma=0.99).index[0, 0] == pytest.approx(0.8699, abs=2e-4)


def _advantage(s, f, lam, gamma, horizon):
  """Pulling minus retiring for a Beta(1+s, 1+f) arm against a known arm paying ``lam``.

  Plain memoised recursion over the posterior tree, valued at ``s + f = horizon`` as if learning
  stopped (the same truncation as the library, computed independently of its vectorised pass).
  """

  @functools.cache
  def value(a, b):
    retire = lam / (1 - gamma)
    mean = (1 + a) / (2 + a + b)
    if a + b == horizon:
      return max(retire, mean / (1 - gamma))
    return max(retire, pull(a, b))

  @functools.cache
  def pull(a, b):
    p = (1 + a) / (2 + a + b)
    return p * (1 + gamma * value(a + 1, b)) + (1 - p) * gamma * value(a, b + 1)

  return pull(s, f) - lam / (1 - gamma)


@pytest.mark.parametrize(("s", "f", "gamma"), [(0, 0, 0.9), (3, 1, 0.9), (0, 4, 0.8), (2, 5, 0.95)])
def test_gittins_index_is_where_an_exact_dp_is_indifferent_to_a_known_arm(s, f, gamma):
  table = bb.gittins_indices(8, gamma=gamma, depth=60)
  index = table.index[s, f]
  horizon = 8 + 60
  eps = table.bracket_error + 1e-7
  assert _advantage(s, f, index - eps, gamma, horizon) > 0  # below the index: keep pulling
  assert _advantage(s, f, index + eps, gamma, horizon) < 0  # above: retire to the known arm
  lo, hi = 0.0, 1.0  # bisection on the independent DP agrees to the bracket
  for _ in range(40):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if _advantage(s, f, mid, gamma, horizon) > 0 else (lo, mid)
  assert abs(index - 0.5 * (lo + hi)) <= eps


def test_truncation_bound_holds_and_deeper_trees_only_raise_the_index():
  shallow = bb.gittins_indices(5, gamma=0.95, depth=10, grid=512)
  deep = bb.gittins_indices(5, gamma=0.95, depth=400, grid=512)
  gap = deep.index - shallow.index
  slack = shallow.bracket_error + deep.bracket_error
  valid = ~np.isnan(gap)
  assert np.all(gap[valid] >= -slack)
  assert np.all(gap[valid] <= shallow.truncation_error + deep.truncation_error + slack)
  assert gap[valid].min() > 10 * slack  # the shallow tree is measurably truncated


def test_gittins_index_monotone_and_above_the_posterior_mean():
  index = bb.gittins_indices(40, gamma=0.98).index
  s, f = np.meshgrid(np.arange(41), np.arange(41), indexing="ij")
  inner = s + f < 40
  assert np.all(index[1:, :][inner[:-1, :]] > index[:-1, :][inner[:-1, :]])  # more successes
  assert np.all(index[:, 1:][inner[:, :-1]] < index[:, :-1][inner[:, :-1]])  # more failures
  tab = s + f <= 40
  assert np.all(index[tab] > (1 + s[tab]) / (2 + s[tab] + f[tab]))
  assert np.all(index[tab] < 1)


def _expected_total(choose_scores, arms, pulls):
  """Exact expected total reward of an index policy (uniform tie-break) under U[0,1] priors."""

  @functools.cache
  def value(state):
    left = pulls - sum(s + f for s, f in state)
    if left == 0:
      return 0.0
    scores = [choose_scores(s, f) for s, f in state]
    best = [a for a in range(arms) if scores[a] >= max(scores)]
    total = 0.0
    for a in best:
      s, f = state[a]
      p = (1 + s) / (2 + s + f)
      win = tuple(sorted(state[:a] + ((s + 1, f),) + state[a + 1:]))
      lose = tuple(sorted(state[:a] + ((s, f + 1),) + state[a + 1:]))
      total += p * (1 + value(win)) + (1 - p) * value(lose)
    return total / len(best)

  return value(tuple((0, 0) for _ in range(arms)))


@pytest.mark.parametrize(("arms", "pulls"), [(2, 10), (2, 30), (3, 10)])
def test_gittins_policy_is_close_to_but_not_above_the_bayes_optimal_value(arms, pulls):
  index = bb.gittins_indices(pulls - 1, gamma=1 - 1 / pulls).index
  gittins = _expected_total(lambda s, f: index[s, f], arms, pulls)
  greedy = _expected_total(lambda s, f: (1 + s) / (2 + s + f), arms, pulls)
  _, optimal = bb.bayes_optimal(arms, pulls)
  assert greedy < gittins <= optimal + 1e-12
  assert gittins > 0.99 * optimal, (gittins, optimal)


def test_gittins_strategy_plays_the_largest_index_and_breaks_ties_at_random():
  choose = bb.gittins(10, gamma=0.9)
  counts = np.zeros((4000, 3, 2), np.int64)
  counts[:, 0] = (3, 3)  # a lower index than the untried arms 1 and 2 (0.7029)
  arms = choose(counts, 6, np.random.default_rng(0))
  assert set(np.unique(arms)) == {1, 2} and abs((arms == 1).mean() - 0.5) < 0.05
  counts[:, 1] = (1, 0)  # 0.8001 beats the untried arm's 0.7029
  assert np.all(choose(counts, 7, np.random.default_rng(0)) == 1)
  rng = np.random.default_rng(0)
  total = bb.play(rng.random((3000, 5)), 10, bb.gittins(10), seed=1)
  random = bb.play(rng.random((3000, 5)), 10, bb.random_strategy, seed=1)
  assert bb.mean_ci(total)[0] > bb.mean_ci(random)[0] + 1.0


def test_gittins_rejects_bad_arguments_with_the_fix():
  with pytest.raises(ValueError, match="gamma must be in"):
    bb.gittins_indices(5, gamma=1.0)
  with pytest.raises(ValueError, match="max_count"):
    bb.gittins_indices(-1, gamma=0.9)
  with pytest.raises(ValueError, match="depth"):
    bb.gittins_indices(5, gamma=0.9, depth=0)
  with pytest.raises(ValueError, match="limit"):
    bb.gittins_indices(500, gamma=0.9999)
  with pytest.raises(ValueError, match="pulls"):
    bb.gittins(0)
  with pytest.raises(TypeError, match="pulls must be a Python int.*2.5.*pulls=5"):
    bb.gittins(2.5)
  with pytest.raises(ValueError, match="built for pulls=3"):
    bb.gittins(3)(np.zeros((1, 2, 2), np.int64), 3, np.random.default_rng(0))


def test_bayes_optimal_counts_its_states_exactly_and_refuses_many_arms():
  import itertools

  for arms, pulls in [(1, 6), (2, 3), (3, 7), (5, 6)]:
    types = [(s, w - s) for w in range(pulls + 1) for s in range(w + 1)]
    brute = sum(1 for m in itertools.combinations_with_replacement(types, arms)
                if sum(s + f for s, f in m) <= pulls)
    assert bb._posterior_state_count(arms, pulls, limit=1e9) == brute
  # k=50, n=100: the old estimate C(2k + n, 2k) / k! said 3e-6 states and the DP never ended.
  with pytest.raises(ValueError, match="posterior states"):
    bb.bayes_optimal(50, 100)
