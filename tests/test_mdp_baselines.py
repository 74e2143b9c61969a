"""Random-MDP baselines: the oracle against brute-force enumeration, the posterior against hand
computations, PSRL's posterior draws against their closed-form choice probabilities, the simulator
against exact policy values and against the JAX environment's own step, and the order
random < PSRL < oracle on 200 random MDPs."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax.envs import mdp_baselines as mb
from metajax.envs.bandit_baselines import mean_ci

ENV = envs.tabular_mdp(states=10, actions=5, episode_length=10)


@pytest.fixture(scope="module")
def tasks200():
  """200 MDPs from the environment itself (drawn once: each new count costs a compilation)."""
  return envs.sample_tasks(ENV, jax.random.key(0), 200)


def _random_mdps(count, states, actions, seed):
  rng = np.random.default_rng(seed)
  return (rng.dirichlet(np.ones(states), (count, states, actions)),
          rng.normal(1.0, 1.0, (count, states, actions)))


def _enumerated_value(transitions, mean_rewards, rule, horizon):
  """Expected episode reward from state 0 of a deterministic policy ``rule[t][s]``, summed over
  every state path (no dynamic programming)."""
  states = transitions.shape[0]
  total = 0.0
  for path in itertools.product(range(states), repeat=horizon - 1):
    visited = (0,) + path
    prob, reward = 1.0, 0.0
    for t, s in enumerate(visited):
      a = rule[t][s]
      reward += mean_rewards[s, a]
      if t + 1 < horizon:
        prob *= transitions[s, a, visited[t + 1]]
    total += prob * reward  # the path's probability times the rewards collected on it
  return total


def test_oracle_equals_the_best_of_all_enumerated_policies():
  transitions, mean_rewards = _random_mdps(4, 2, 2, seed=3)
  horizon = 3
  policy, values = mb.value_iteration((transitions, mean_rewards), horizon)
  oracle = mb.oracle_value((transitions, mean_rewards), horizon)
  np.testing.assert_allclose(oracle, values[:, 0, 0])
  rules = [np.reshape(bits, (horizon, 2)) for bits in itertools.product((0, 1), repeat=2 * horizon)]
  for task in range(4):
    enumerated = [_enumerated_value(transitions[task], mean_rewards[task], rule, horizon)
                  for rule in rules]
    assert oracle[task] == pytest.approx(max(enumerated), abs=1e-12)
    assert _enumerated_value(transitions[task], mean_rewards[task], policy[task],
                             horizon) == pytest.approx(oracle[task], abs=1e-12)
    # policy_value agrees with the enumeration for an arbitrary, suboptimal rule too
    rule = rules[11]
    mine = mb.policy_value((transitions[task:task + 1], mean_rewards[task:task + 1]), rule[None])
    assert mine[0] == pytest.approx(enumerated[11], abs=1e-12)
  assert min(enumerated) < oracle[-1] - 1e-3  # the maximum is not trivially attained


def test_belief_and_posterior_after_one_deterministic_episode_match_a_hand_computation():
  # Two states, two actions; action a moves s -> (s + a) % 2 surely; rewards without noise.
  transitions = np.zeros((1, 2, 2, 2))
  for s, a in itertools.product(range(2), range(2)):
    transitions[0, s, a, (s + a) % 2] = 1.0
  mean_rewards = np.array([[[0.3, 2.0], [-1.0, 0.5]]])
  seen = []

  def always_one(belief, rng):
    seen.append(belief)
    return np.ones((1, belief.episode_length, 2), np.int64)

  total = mb.play((transitions, mean_rewards), 2, always_one, episode_length=3, reward_std=0.0)
  assert total[0] == pytest.approx(2 * (2.0 + 0.5 + 2.0))  # path 0 -> 1 -> 0 -> 1, twice
  after = seen[1]  # what the strategy saw at the start of the second episode
  assert after.episode == 1 and after.episode_length == 3
  np.testing.assert_array_equal(after.visits[0], [[0, 2], [0, 1]])
  np.testing.assert_allclose(after.reward_sums[0], [[0.0, 4.0], [0.0, 0.5]])
  assert after.transition_counts[0, 0, 1].tolist() == [0, 2]
  assert after.transition_counts[0, 1, 1].tolist() == [1, 0]
  post = mb.posterior(after)  # N(1, 1) prior, unit noise: precision 1 + n, mean (1 + sum)/(1 + n)
  assert post.reward_mean[0, 0, 1] == pytest.approx((1 + 4.0) / 3)
  assert post.reward_std[0, 0, 1] == pytest.approx(1 / math.sqrt(3))
  assert post.reward_mean[0, 1, 1] == pytest.approx((1 + 0.5) / 2)
  assert post.reward_mean[0, 0, 0] == 1.0 and post.reward_std[0, 0, 0] == 1.0  # untried: prior
  assert post.dirichlet[0, 0, 1].tolist() == [1.0, 3.0]
  other = mb.posterior(after, reward_mean=0.0, prior_std=2.0, reward_std=0.5, dirichlet=0.5)
  precision = 1 / 4 + 2 / 0.25
  assert other.reward_mean[0, 0, 1] == pytest.approx((0 / 4 + 4.0 / 0.25) / precision)
  assert other.reward_std[0, 0, 1] == pytest.approx(precision**-0.5)
  assert other.dirichlet[0, 0, 1].tolist() == [0.5, 2.5]
  with pytest.raises(ValueError, match="read-only"):
    after.visits[0, 0, 0] = 5  # strategies cannot alter the record


def _belief(counts, sums, visits, episode_length):
  return mb.Belief(np.asarray(counts, np.int64), np.asarray(sums, np.float64),
                   np.asarray(visits, np.int64), 1, episode_length)


def test_psrl_reward_draws_pick_each_action_with_the_closed_form_probability():
  # One state, two actions, one step: PSRL plays the action whose sampled mean reward is larger.
  tasks = 40_000
  visits = np.tile([[[3, 0]]], (tasks, 1, 1))
  sums = np.tile([[[4.5, 0.0]]], (tasks, 1, 1))  # posteriors N(1.375, 0.5^2) and N(1, 1)
  counts = visits[..., None]
  actions = mb.psrl()(_belief(counts, sums, visits, 1), np.random.default_rng(0))[:, 0, 0]
  expected = 0.5 * (1 + math.erf(0.375 / math.sqrt(1.25) / math.sqrt(2)))  # P(X0 > X1) = 0.631
  assert abs((actions == 0).mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / tasks)


def test_psrl_transition_draws_pick_each_action_with_the_closed_form_probability():
  # Two states, two steps. Mean rewards are pinned by 1e10 visits to 0 in state 0 and 1 in state
  # 1, so at t=0 PSRL plays the action with the larger sampled P(1 | 0, a): Beta(4, 2) for action
  # 0 (next-state counts 1 and 3 on a flat prior) against Beta(1, 1) for action 1, and
  # P(Beta(4, 2) > U[0, 1]) = E[Beta(4, 2)] = 2/3.
  tasks = 40_000
  known = 10**10
  counts = np.zeros((tasks, 2, 2, 2), np.int64)
  counts[:, 0, 0] = (1, 3)
  visits = np.full((tasks, 2, 2), known)
  sums = np.zeros((tasks, 2, 2))
  sums[:, 1] = known
  actions = mb.psrl()(_belief(counts, sums, visits, 2), np.random.default_rng(1))[:, 0, 0]
  expected = 2 / 3
  assert abs((actions == 0).mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / tasks)
  flat = counts.copy()
  flat[:, 0, 0] = 0  # both rows untried: a fair coin
  actions = mb.psrl()(_belief(flat, sums, visits, 2), np.random.default_rng(2))[:, 0, 0]
  assert abs((actions == 0).mean() - 0.5) < 4 * math.sqrt(0.25 / tasks)


def test_simulated_totals_match_exact_values(tasks200):
  tasks = tasks200
  oracle_total = mb.play(tasks, 10, mb.oracle(tasks), seed=3)
  gap, half = mean_ci(oracle_total - 10 * mb.oracle_value(tasks))
  assert abs(gap) < 1.5 * half, (gap, half)
  uniform = np.full((200, 10, 10, 5), 0.2)
  random_total = mb.play(tasks, 10, mb.random_policy, seed=4)
  gap, half = mean_ci(random_total - 10 * mb.policy_value(tasks, uniform))
  assert abs(gap) < 1.5 * half, (gap, half)


def test_the_environments_own_step_agrees_with_the_exact_oracle_value(tasks200):
  tasks = tasks200
  policy = jnp.asarray(mb.value_iteration(tasks, 10)[0])

  def episode(task, rule, key):
    _, state = ENV.reset(key, task)

    def body(state, inputs):
      t, step_key = inputs
      _, state, reward, done, _ = ENV.step(step_key, state, rule[t, state[0]], task)
      return state, (reward, done)

    _, (rewards, dones) = jax.lax.scan(body, state, (jnp.arange(10), jax.random.split(key, 10)))
    return rewards.sum(), dones

  totals, dones = jax.jit(jax.vmap(episode))(tasks, policy,
                                             jax.random.split(jax.random.key(7), 200))
  assert np.all(np.asarray(dones)[:, -1]) and not np.any(np.asarray(dones)[:, :-1])
  gap, half = mean_ci(np.asarray(totals, np.float64) - mb.oracle_value(tasks))
  assert abs(gap) < 1.5 * half, (gap, half)


def test_psrl_beats_random_and_stays_below_the_oracle_on_200_mdps(tasks200):
  tasks = tasks200
  random_mean, random_half = mean_ci(mb.play(tasks, 10, mb.random_policy, seed=1))
  psrl_mean, psrl_half = mean_ci(mb.play(tasks, 10, mb.psrl(), seed=1))
  oracle_mean = 10 * mb.oracle_value(tasks).mean()
  assert 94 < random_mean < 106  # 1 per step in expectation
  assert psrl_mean - random_mean > 15 > 3 * math.hypot(psrl_half, random_half)
  assert psrl_mean < oracle_mean - 40
  first, half = mean_ci(mb.play(tasks, 1, mb.psrl(), seed=2))
  assert abs(first - 10) < 1.5 * half + 0.5  # the first episode follows a prior draw: 1 per step


def test_greedy_breaks_ties_at_random_and_epsilon_one_is_uniform():
  tasks = 6000
  empty = _belief(np.zeros((tasks, 3, 4, 3)), np.zeros((tasks, 3, 4)), np.zeros((tasks, 3, 4)), 2)
  for choose in (mb.greedy(), mb.epsilon_greedy(1.0)):
    actions = choose(empty, np.random.default_rng(0))
    freq = np.bincount(actions.ravel(), minlength=4) / actions.size
    np.testing.assert_allclose(freq, 0.25, atol=0.01)


def test_myopic_is_greedy_with_a_one_step_horizon_and_repeats_it_every_step():
  """On a random belief (some pairs untried, so ties too), myopic's choice equals greedy's
  backward induction cut to one step, drawn with the same generator, at every step index."""
  rng = np.random.default_rng(3)
  visits = rng.integers(0, 3, (50, 4, 3))
  counts = np.zeros((50, 4, 3, 4), np.int64)
  for t, s, a in zip(*np.nonzero(visits)):
    counts[t, s, a] = rng.multinomial(visits[t, s, a], np.full(4, 0.25))
  sums = rng.normal(1.0, 1.5, visits.shape) * visits
  one_step = mb.greedy()(_belief(counts, sums, visits, 1), np.random.default_rng(7))
  actions = mb.myopic()(_belief(counts, sums, visits, 5), np.random.default_rng(7))
  assert actions.shape == (50, 5, 4)
  np.testing.assert_array_equal(actions, np.repeat(one_step, 5, axis=1))
  assert (visits == 0).any() and len(np.unique(actions)) == 3


def test_myopic_lands_far_above_random_and_below_the_oracle_on_200_mdps(tasks200):
  random_mean, random_half = mean_ci(mb.play(tasks200, 10, mb.random_policy, seed=1))
  myopic_mean, myopic_half = mean_ci(mb.play(tasks200, 10, mb.myopic(), seed=1))
  assert myopic_mean - random_mean > 30 > 3 * math.hypot(myopic_half, random_half)
  assert myopic_mean < 10 * mb.oracle_value(tasks200).mean() - 40


def test_state_blind_plays_the_action_of_best_pooled_posterior_mean_everywhere():
  """Two tasks, 3 states x 3 actions. Task 0: action 1 paid 2.0 twice (in states 0 and 2),
  action 2 paid 3.0 once (state 1), so the pooled posterior means (prior N(1, 1), unit noise)
  are 1 (untried), (1 + 4) / 3 = 1.67 and (1 + 3) / 2 = 2.0: action 2, in every state and step,
  although state 0 has only seen action 1. Task 1 has seen nothing: one action drawn at random
  for all states, each action about equally often over many draws."""
  visits = np.zeros((2, 3, 3))
  sums = np.zeros((2, 3, 3))
  visits[0, 0, 1] = visits[0, 2, 1] = visits[0, 1, 2] = 1
  sums[0, 0, 1] = sums[0, 2, 1] = 2.0
  sums[0, 1, 2] = 3.0
  counts = np.zeros((2, 3, 3, 3))
  rng = np.random.default_rng(0)
  actions = mb.state_blind()(_belief(counts, sums, visits, 4), rng)
  assert actions.shape == (2, 4, 3)
  np.testing.assert_array_equal(actions[0], 2)
  assert len(np.unique(actions[1])) == 1
  draws = [int(mb.state_blind()(_belief(counts, sums, visits, 4), rng)[1, 0, 0])
           for _ in range(600)]
  np.testing.assert_allclose(np.bincount(draws, minlength=3) / 600, 1 / 3, atol=0.07)


def test_state_blind_lies_between_random_and_myopic_on_200_mdps(tasks200):
  """Pooling the states loses most of what the per-state record (myopic) earns."""
  random_mean, random_half = mean_ci(mb.play(tasks200, 10, mb.random_policy, seed=1))
  blind_mean, blind_half = mean_ci(mb.play(tasks200, 10, mb.state_blind(), seed=1))
  myopic_mean, myopic_half = mean_ci(mb.play(tasks200, 10, mb.myopic(), seed=1))
  assert blind_mean - random_mean > 3 * math.hypot(blind_half, random_half), (
      blind_mean, random_mean)
  assert myopic_mean - blind_mean > 3 * math.hypot(myopic_half, blind_half), (
      myopic_mean, blind_mean)


def test_bad_inputs_raise_with_the_rule_and_the_fix():
  tasks = _random_mdps(3, 10, 5, seed=0)
  one = (tasks[0][0], tasks[1][0])
  with pytest.raises(ValueError, match="sample_tasks"):
    mb.play(one, 10, mb.random_policy)
  with pytest.raises(ValueError, match="episodes must be >= 1, got 0"):
    mb.play(tasks, 0, mb.random_policy)
  with pytest.raises(TypeError, match="episode_length must be a Python int.*2.5"):
    mb.value_iteration(tasks, 2.5)
  with pytest.raises(ValueError, match="reward_std"):
    mb.play(tasks, 1, mb.random_policy, reward_std=-1.0)
  with pytest.raises(ValueError, match=r"shape \[tasks, episode_length, states\]"):
    mb.play(tasks, 1, lambda belief, rng: np.zeros((3, 10), np.int64))
  with pytest.raises(ValueError, match="actions 0 .. 4"):
    mb.play(tasks, 1, lambda belief, rng: np.full((3, 10, 10), 5))
  with pytest.raises(ValueError, match="built for 3 tasks"):
    mb.play(_random_mdps(4, 10, 5, seed=1), 1, mb.oracle(tasks))
  with pytest.raises(ValueError, match="epsilon"):
    mb.epsilon_greedy(1.5)
  with pytest.raises(ValueError, match="prior_std"):
    mb.psrl(prior_std=0.0)
  with pytest.raises(ValueError, match="reward_std must be a finite number > 0, got 0.0"):
    mb.myopic(reward_std=0.0)
  with pytest.raises(ValueError, match="probability vector"):
    mb.oracle_value((np.full((1, 2, 2, 2), 0.7), np.zeros((1, 2, 2))))
