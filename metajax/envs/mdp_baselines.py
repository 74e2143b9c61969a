"""Reference strategies for random tabular MDPs: random, oracle, PSRL, (epsilon-)greedy, myopic,
state-blind.

Host-side NumPy, vectorised over tasks: the yardsticks RL² is measured against on random MDPs
(RL² Section 3.2, Table 2), run on the *same* MDPs as the learner, i.e. the
:class:`~metajax.envs.TabularMDPTask` batches that :func:`metajax.envs.sample_tasks` draws from
:func:`metajax.envs.tabular_mdp`.

A trial is ``episodes`` episodes of ``episode_length`` steps on one MDP. As in ``tabular_mdp``'s
``reset``/``step`` and RL²'s rollout, every episode starts in state 0, a step from ``s`` with
action ``a`` pays ``mean_rewards[s, a] + reward_std * N(0, 1)`` and moves to
``s' ~ transitions[s, a]``. :func:`play` simulates that with NumPy's generator (the same
distributions as the JAX environment, not the same random numbers).

Every strategy fixes, at the start of each episode, a deterministic non-stationary policy
``[episode_length, states] -> action`` from the trial so far (a :class:`Belief`: transition counts,
reward sums and visit counts). Within one episode each step index is taken once, in one state, so
a table drawn afresh per episode also expresses the uniformly random policy and epsilon-greedy
exploration exactly (one independent draw per step).

The Bayesian strategies (:func:`psrl`, :func:`greedy`, :func:`epsilon_greedy`) use the
environment's generative model as their prior by default -- Dirichlet(1, ..., 1) on each transition
row, N(1, 1) on each mean reward, known unit reward noise -- so their Normal posterior is exact
(conjugate). That is the most favourable prior there is. The RL² authors' baseline script (found
in github.com/florensacc/rllab-curriculum, ``sandbox/rocky/neural_learner``) ran Osband's TabulaRL
agents with their default arguments; upstream TabulaRL's default reward prior is N(0, 1), not the
N(1, 1) the MDPs are drawn from, so the paper's PSRL may differ slightly from ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from metajax.core._checks import check_steps


class Belief(NamedTuple):
  """What a strategy has seen so far in each trial (sufficient statistics), read-only.

  Attributes:
    transition_counts: ``[tasks, states, actions, states]`` int64; ``[t, s, a, s']`` counts the
      steps from ``s`` with action ``a`` that moved to ``s'``.
    reward_sums: ``[tasks, states, actions]`` float64 sums of the rewards received.
    visits: ``[tasks, states, actions]`` int64 counts of the steps taken.
    episode: 0-based index of the episode about to start.
    episode_length: steps per episode (the horizon of the policy to return).
  """

  transition_counts: np.ndarray
  reward_sums: np.ndarray
  visits: np.ndarray
  episode: int
  episode_length: int


class MDPPosterior(NamedTuple):
  """Posterior over each task's MDP given a :class:`Belief`.

  Attributes:
    dirichlet: ``[tasks, states, actions, states]`` Dirichlet parameters of each transition row.
    reward_mean: ``[tasks, states, actions]`` posterior mean of each mean reward.
    reward_std: ``[tasks, states, actions]`` posterior standard deviation of each mean reward
      (the uncertainty about ``r(s, a)``, not the reward noise).
  """

  dirichlet: np.ndarray
  reward_mean: np.ndarray
  reward_std: np.ndarray


Strategy = Callable[[Belief, np.random.Generator], np.ndarray]


def play(tasks: Any, episodes: int, choose: Strategy, *, episode_length: int = 10,
         reward_std: float = 1.0, seed: int = 0) -> np.ndarray:
  """Total reward of a strategy over a trial of ``episodes`` episodes on each task.

  Args:
    tasks: a :class:`~metajax.envs.TabularMDPTask` with a leading task axis (e.g. from
      ``metajax.envs.sample_tasks(env, key, count)``): ``transitions`` ``[tasks, states, actions,
      states]`` and ``mean_rewards`` ``[tasks, states, actions]``; JAX or NumPy arrays.
    episodes: episodes per trial ``n``.
    choose: ``choose(belief, rng) -> [tasks, episode_length, states]`` integer actions, called at
      the start of every episode with the :class:`Belief` so far.
    episode_length: steps per episode; the environment's ``episode_length``.
    reward_std: standard deviation of the reward noise; the environment's ``reward_std``
      (``tabular_mdp`` default 1). 0 gives deterministic rewards.
    seed: seed of the environment's draws (rewards, next states); the strategy gets its own
      generator, derived from the same seed.

  Returns:
    ``[tasks]`` float64 total (undiscounted) reward per trial.

  Raises:
    TypeError: if ``episodes`` or ``episode_length`` is not an integer.
    ValueError: if ``tasks`` has no task axis or inconsistent shapes, a count is below 1,
      ``reward_std`` is negative, or ``choose`` returns a policy of the wrong shape or with
      actions out of range.

  Example:
    >>> import jax, metajax.envs as envs
    >>> env = envs.tabular_mdp()
    >>> tasks = envs.sample_tasks(env, jax.random.key(0), 50)
    >>> play(tasks, 10, random_policy, seed=1).shape
    (50,)
  """
  transitions, mean_rewards = _as_arrays(tasks)
  episodes = check_steps(episodes, "episodes", minimum=1)
  episode_length = check_steps(episode_length, "episode_length", minimum=1)
  if not (math.isfinite(reward_std) and reward_std >= 0):
    raise ValueError(f"reward_std must be a finite number >= 0, got {reward_std!r}; pass the "
                     "environment's reward_std (tabular_mdp's default is 1.0).")
  count, states, actions, _ = transitions.shape
  env_seed, strategy_seed = np.random.SeedSequence(seed).spawn(2)
  env_rng, strategy_rng = np.random.default_rng(env_seed), np.random.default_rng(strategy_seed)
  cumulative = np.cumsum(transitions, axis=-1)
  counts = np.zeros((count, states, actions, states), np.int64)
  sums = np.zeros((count, states, actions))
  visits = np.zeros((count, states, actions), np.int64)
  total = np.zeros(count)
  rows = np.arange(count)
  for episode in range(episodes):
    belief = Belief(_read_only(counts), _read_only(sums), _read_only(visits), episode,
                    episode_length)
    policy = _check_policy(choose(belief, strategy_rng), (count, episode_length, states), actions)
    state = np.zeros(count, np.int64)
    for t in range(episode_length):
      action = policy[rows, t, state]
      reward = mean_rewards[rows, state, action] + reward_std * env_rng.standard_normal(count)
      u = env_rng.random(count)[:, None]
      next_state = np.minimum((cumulative[rows, state, action] < u).sum(-1), states - 1)
      counts[rows, state, action, next_state] += 1
      sums[rows, state, action] += reward
      visits[rows, state, action] += 1
      total += reward
      state = next_state
  return total


def value_iteration(tasks: Any, episode_length: int = 10, *,
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Optimal finite-horizon policy and values of each task by backward induction.

  ``Q_t(s, a) = r(s, a) + sum_s' P(s' | s, a) V_{t+1}(s')`` with ``V_T = 0``, ``T`` the episode
  length; undiscounted, as the trial's total reward is.

  Args:
    tasks: MDPs with a leading task axis (``transitions``, ``mean_rewards`` as in :func:`play`).
    episode_length: horizon ``T``.
    rng: if given, ties between actions are broken uniformly at random; else the lowest action
      index wins.

  Returns:
    ``(policy, values)``: ``policy`` ``[tasks, T, states]`` int64 optimal actions at each step;
    ``values`` ``[tasks, T + 1, states]`` float64, ``values[:, t, s]`` the optimal expected reward
    from step ``t`` in state ``s`` to the end of the episode.

  Raises:
    TypeError: if ``episode_length`` is not an integer.
    ValueError: on shapes without a task axis or an episode length below 1.

  Example:
    >>> import numpy as np
    >>> one_state = (np.ones((1, 1, 2, 1)), np.array([[[0.5, 2.0]]]))  # 1 state, 2 actions
    >>> policy, values = value_iteration(one_state, 3)
    >>> policy[0, :, 0].tolist(), float(values[0, 0, 0])
    ([1, 1, 1], 6.0)

  References:
    Bellman, "Dynamic Programming", Princeton University Press, 1957;
    Puterman, "Markov Decision Processes", Wiley, 1994, ch. 4 (finite-horizon models).
  """
  transitions, mean_rewards = _as_arrays(tasks)
  episode_length = check_steps(episode_length, "episode_length", minimum=1)
  return _solve(transitions, mean_rewards, episode_length, rng)


def oracle_value(tasks: Any, episode_length: int = 10) -> np.ndarray:
  """Exact expected reward of one episode from state 0 under each task's optimal policy.

  An agent that knows the MDP expects ``episodes * oracle_value(...)`` per trial; no strategy
  expects more.

  Args:
    tasks: MDPs with a leading task axis.
    episode_length: steps per episode.

  Returns:
    ``[tasks]`` float64 optimal expected episode reward.

  Example:
    >>> import numpy as np
    >>> oracle_value((np.ones((1, 1, 2, 1)), np.array([[[0.5, 2.0]]])), 3).tolist()
    [6.0]
  """
  return value_iteration(tasks, episode_length)[1][:, 0, 0]


def policy_value(tasks: Any, policy: np.ndarray) -> np.ndarray:
  """Exact expected reward of one episode from state 0 under a given policy.

  Args:
    tasks: MDPs with a leading task axis.
    policy: ``[tasks, T, states]`` integer actions, or ``[tasks, T, states, actions]``
      probabilities of each action (a stochastic policy); ``T`` is the episode length.

  Returns:
    ``[tasks]`` float64 expected episode reward.

  Raises:
    ValueError: if the policy's shape does not fit the tasks or its probabilities do not sum to 1.

  Example:
    >>> import numpy as np
    >>> task = (np.ones((1, 1, 2, 1)), np.array([[[0.5, 2.0]]]))
    >>> policy_value(task, np.full((1, 3, 1, 2), 0.5)).tolist()  # uniformly random
    [3.75]
  """
  transitions, mean_rewards = _as_arrays(tasks)
  count, states, actions, _ = transitions.shape
  policy = np.asarray(policy)
  if policy.ndim == 3:
    policy = _check_policy(policy, (count, policy.shape[1], states), actions)
    policy = np.eye(actions)[policy]
  if policy.ndim != 4 or policy.shape[0] != count or policy.shape[2:] != (states, actions):
    raise ValueError(f"policy has shape {policy.shape}; expected [tasks, T, states] actions or "
                     f"[tasks, T, states, actions] probabilities with tasks={count}, "
                     f"states={states}, actions={actions}.")
  if not np.allclose(policy.sum(-1), 1.0):
    raise ValueError("policy probabilities must sum to 1 over the actions of every step and "
                     "state; normalise them, e.g. policy / policy.sum(-1, keepdims=True).")
  value = np.zeros((count, states))
  for t in reversed(range(policy.shape[1])):
    q = mean_rewards + np.einsum("tsan,tn->tsa", transitions, value)
    value = (policy[:, t] * q).sum(-1)
  return value[:, 0]


def random_policy(belief: Belief, rng: np.random.Generator) -> np.ndarray:
  """Uniformly random actions: a fresh uniform table every episode (one draw per step).

  Args:
    belief: the trial so far (only its shapes are used).
    rng: random generator.

  Returns:
    ``[tasks, episode_length, states]`` int64 actions.

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 200)
    >>> bool(80 < play(tasks, 10, random_policy).mean() < 120)  # about 1 per step
    True
  """
  count, states, actions, _ = belief.transition_counts.shape
  return rng.integers(0, actions, (count, belief.episode_length, states))


def oracle(tasks: Any, episode_length: int = 10) -> Strategy:
  """The optimal policy of each (known) MDP, played every episode: an upper bound.

  Args:
    tasks: the MDPs that :func:`play` will be given, in the same order.
    episode_length: steps per episode.

  Returns:
    ``choose(belief, rng) -> policy`` for :func:`play` (it ignores what it sees).

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 200)
    >>> total = play(tasks, 10, oracle(tasks))
    >>> bool(abs(total.mean() - 10 * oracle_value(tasks).mean()) < 5)
    True

  References:
    Bellman, "Dynamic Programming", 1957 (finite-horizon value iteration).
  """
  policy, _ = value_iteration(tasks, episode_length)
  policy.setflags(write=False)

  def choose(belief: Belief, rng: np.random.Generator) -> np.ndarray:
    del rng
    if belief.transition_counts.shape[0] != policy.shape[0] or (
        belief.episode_length != policy.shape[1]):
      raise ValueError(
          f"this oracle was built for {policy.shape[0]} tasks and episode_length="
          f"{policy.shape[1]}, but play runs {belief.transition_counts.shape[0]} tasks with "
          f"episode_length={belief.episode_length}; build oracle(tasks, episode_length) from the "
          "tasks you play.")
    return policy

  return choose


def posterior(belief: Belief, *, reward_mean: float = 1.0, prior_std: float = 1.0,
              reward_std: float = 1.0, dirichlet: float = 1.0) -> MDPPosterior:
  """Conjugate posterior of each task's MDP: Dirichlet transitions, Normal mean rewards.

  Prior: ``P(. | s, a) ~ Dirichlet(dirichlet, ..., dirichlet)`` and ``r(s, a) ~ N(reward_mean,
  prior_std^2)``, rewards observed with known noise ``N(r(s, a), reward_std^2)``. After ``n``
  visits to ``(s, a)`` with reward sum ``y`` and next-state counts ``c``: ``Dirichlet(dirichlet +
  c)`` and ``N(m, v)`` with precision ``1/v = 1/prior_std^2 + n/reward_std^2`` and mean
  ``m = v (reward_mean/prior_std^2 + y/reward_std^2)``. The defaults are ``tabular_mdp``'s own
  generative model, so the posterior is exact there.

  Args:
    belief: the trial so far.
    reward_mean: prior mean of every mean reward.
    prior_std: prior standard deviation of every mean reward.
    reward_std: standard deviation of the reward noise.
    dirichlet: concentration of the symmetric Dirichlet prior on each transition row.

  Returns:
    An :class:`MDPPosterior`.

  Raises:
    ValueError: if a prior parameter is not a finite positive number (or ``reward_mean`` not
      finite).

  Example:
    >>> import numpy as np
    >>> counts = np.zeros((1, 1, 1, 2), np.int64); counts[0, 0, 0] = (2, 1)
    >>> belief = Belief(counts, np.array([[[4.5]]]), np.array([[[3]]]), 1, 3)
    >>> post = posterior(belief)
    >>> post.dirichlet[0, 0, 0].tolist(), float(post.reward_mean[0, 0, 0])
    ([3.0, 2.0], 1.375)

  References:
    DeGroot, "Optimal Statistical Decisions", McGraw-Hill, 1970, ch. 9 (conjugate families);
    Osband, Russo & Van Roy, "(More) Efficient Reinforcement Learning via Posterior Sampling",
    NeurIPS 2013 (this prior on random MDPs).
  """
  if not math.isfinite(reward_mean):
    raise ValueError(f"reward_mean must be finite, got {reward_mean!r}.")
  for name, value in (("prior_std", prior_std), ("reward_std", reward_std),
                      ("dirichlet", dirichlet)):
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f"{name} must be a finite number > 0, got {value!r}; tabular_mdp's "
                       f"generative model has {name}=1.0.")
  precision = 1.0 / prior_std**2 + belief.visits / reward_std**2
  mean = (reward_mean / prior_std**2 + belief.reward_sums / reward_std**2) / precision
  return MDPPosterior(dirichlet + belief.transition_counts.astype(np.float64), mean,
                      1.0 / np.sqrt(precision))


def psrl(*, reward_mean: float = 1.0, prior_std: float = 1.0, reward_std: float = 1.0,
         dirichlet: float = 1.0) -> Strategy:
  """Posterior sampling for reinforcement learning (PSRL).

  At the start of every episode, draws one MDP from the :func:`posterior` of each task, solves it
  by finite-horizon value iteration over the episode and follows its optimal policy for the whole
  episode; the posterior is updated with every step.

  Args:
    reward_mean: prior mean of every mean reward (``tabular_mdp``: 1).
    prior_std: prior standard deviation of every mean reward (``tabular_mdp``: 1).
    reward_std: standard deviation of the reward noise (``tabular_mdp``: 1).
    dirichlet: concentration of the symmetric Dirichlet prior on transitions (``tabular_mdp``: 1).

  Returns:
    ``choose(belief, rng) -> policy`` for :func:`play`.

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 200)
    >>> bool(play(tasks, 10, psrl()).mean() > play(tasks, 10, random_policy).mean() + 20)
    True

  References:
    Osband, Russo & Van Roy, "(More) Efficient Reinforcement Learning via Posterior Sampling",
    NeurIPS 2013; Strens, "A Bayesian Framework for Reinforcement Learning", ICML 2000;
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
    arXiv:1611.02779, 2016 (Table 2 uses PSRL as a baseline).
  """
  prior = dict(reward_mean=reward_mean, prior_std=prior_std, reward_std=reward_std,
               dirichlet=dirichlet)
  posterior(_empty_belief(), **prior)  # checks the prior now, not at the first episode

  def choose(belief: Belief, rng: np.random.Generator) -> np.ndarray:
    post = posterior(belief, **prior)
    gamma = rng.standard_gamma(post.dirichlet)
    transitions = gamma / gamma.sum(-1, keepdims=True)
    mean_rewards = post.reward_mean + post.reward_std * rng.standard_normal(post.reward_mean.shape)
    return _solve(transitions, mean_rewards, belief.episode_length, None)[0]

  return choose


def greedy(*, reward_mean: float = 1.0, prior_std: float = 1.0, reward_std: float = 1.0,
           dirichlet: float = 1.0) -> Strategy:
  """Certainty equivalence: the optimal policy of the posterior-mean MDP, re-solved each episode.

  The posterior-mean MDP has transitions ``alpha / sum(alpha)`` and mean rewards the posterior
  means (see :func:`posterior`); ties between actions (e.g. untried ones) are broken at random.

  Args:
    reward_mean, prior_std, reward_std, dirichlet: the prior and the reward noise, as
      :func:`epsilon_greedy` (which this is with ``epsilon=0``).

  Returns:
    ``choose(belief, rng) -> policy`` for :func:`play`.

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 20)
    >>> play(tasks, 5, greedy()).shape
    (20,)

  References:
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
    arXiv:1611.02779, 2016 (Table 2's "Greedy" baseline).
  """
  return epsilon_greedy(0.0, reward_mean=reward_mean, prior_std=prior_std,
                        reward_std=reward_std, dirichlet=dirichlet)


def epsilon_greedy(epsilon: float, *, reward_mean: float = 1.0, prior_std: float = 1.0,
                   reward_std: float = 1.0, dirichlet: float = 1.0) -> Strategy:
  """:func:`greedy`, but each step takes a uniformly random action with probability ``epsilon``.

  Args:
    epsilon: exploration probability in [0, 1].
    reward_mean: prior mean of every mean reward.
    prior_std: prior standard deviation of every mean reward.
    reward_std: standard deviation of the reward noise.
    dirichlet: concentration of the symmetric Dirichlet prior on transitions.

  Returns:
    ``choose(belief, rng) -> policy`` for :func:`play`.

  Raises:
    ValueError: if ``epsilon`` is outside [0, 1] or a prior parameter is invalid.

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 20)
    >>> play(tasks, 5, epsilon_greedy(0.1)).shape
    (20,)

  References:
    Sutton & Barto, "Reinforcement Learning: An Introduction", 2nd ed., 2018, section 2.2;
    Duan et al., "RL²", arXiv:1611.02779, 2016 (Table 2's "epsilon-Greedy" baseline).
  """
  if not 0.0 <= epsilon <= 1.0:
    raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}; e.g. epsilon=0.1.")
  prior = dict(reward_mean=reward_mean, prior_std=prior_std, reward_std=reward_std,
               dirichlet=dirichlet)
  posterior(_empty_belief(), **prior)

  def choose(belief: Belief, rng: np.random.Generator) -> np.ndarray:
    post = posterior(belief, **prior)
    transitions = post.dirichlet / post.dirichlet.sum(-1, keepdims=True)
    policy = _solve(transitions, post.reward_mean, belief.episode_length, rng)[0]
    if epsilon > 0:
      explore = rng.random(policy.shape) < epsilon
      policy = np.where(explore, rng.integers(0, transitions.shape[2], policy.shape), policy)
    return policy

  return choose


def myopic(*, reward_mean: float = 1.0, prior_std: float = 1.0,
           reward_std: float = 1.0) -> Strategy:
  """The action of highest posterior-mean reward in each state, ignoring where it leads.

  :func:`greedy` with a one-step horizon: the policy never weighs the next state, so it shows
  what the reward statistics alone are worth (on ``tabular_mdp``'s defaults, most of greedy's
  lead over random). Re-chosen at the start of each episode like the other strategies; ties
  (e.g. untried actions, which keep the prior mean) are broken at random.

  Args:
    reward_mean, prior_std, reward_std: the prior and the reward noise, as
      :func:`posterior`.

  Returns:
    ``choose(belief, rng) -> policy`` for :func:`play`.

  Raises:
    ValueError: if a prior parameter is invalid.

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 20)
    >>> play(tasks, 5, myopic()).shape
    (20,)
  """
  prior = dict(reward_mean=reward_mean, prior_std=prior_std, reward_std=reward_std)
  posterior(_empty_belief(), **prior)

  def choose(belief: Belief, rng: np.random.Generator) -> np.ndarray:
    post = posterior(belief, **prior)
    transitions = post.dirichlet / post.dirichlet.sum(-1, keepdims=True)
    best = _solve(transitions, post.reward_mean, 1, rng)[0]  # [tasks, 1, states]
    return np.repeat(best, belief.episode_length, axis=1)

  return choose


def state_blind(*, reward_mean: float = 1.0, prior_std: float = 1.0,
                reward_std: float = 1.0) -> Strategy:
  """One action everywhere: the action of highest posterior-mean reward with the states pooled.

  A deliberately wrong model: it treats each action's mean reward as the same in every state,
  pools that action's rewards from all states into one conjugate Normal posterior (prior
  ``N(reward_mean, prior_std^2)``, noise ``reward_std``) and plays the best action in every
  state and step of the episode (ties at random). It keeps no per-state record, so it shows
  what a learner earns that ignores which state a reward came from (on ``tabular_mdp``'s
  defaults, about a fifth of the way from random to the oracle).

  Args:
    reward_mean, prior_std, reward_std: the prior of each action's pooled mean reward and the
      reward noise, checked as by :func:`posterior`.

  Returns:
    ``choose(belief, rng) -> policy`` for :func:`play`: ``[tasks, episode_length, states]``
    holding one action per task.

  Raises:
    ValueError: if a prior parameter is not finite, or a standard deviation not positive.

  Example:
    >>> import jax, metajax.envs as envs
    >>> tasks = envs.sample_tasks(envs.tabular_mdp(), jax.random.key(0), 20)
    >>> totals = play(tasks, 5, state_blind(), seed=3)
    >>> totals.shape, bool(totals.min() > -100)
    ((20,), True)
  """
  prior = dict(reward_mean=reward_mean, prior_std=prior_std, reward_std=reward_std)
  posterior(_empty_belief(), **prior)

  def choose(belief: Belief, rng: np.random.Generator) -> np.ndarray:
    pooled = Belief(belief.transition_counts.sum(1, keepdims=True),
                    belief.reward_sums.sum(1, keepdims=True),
                    belief.visits.sum(1, keepdims=True), belief.episode, belief.episode_length)
    mean = posterior(pooled, **prior).reward_mean[:, 0]  # [tasks, actions]
    best = np.argmax(mean + 1e-9 * rng.random(mean.shape), axis=-1)  # ties at random, as _solve
    states = belief.visits.shape[1]
    return np.broadcast_to(best[:, None, None], (len(best), belief.episode_length, states))

  return choose


def _solve(transitions, mean_rewards, episode_length, rng):
  """Backward induction over ``episode_length`` steps; see :func:`value_iteration`."""
  count, states, _, _ = transitions.shape
  values = np.zeros((count, episode_length + 1, states))
  policy = np.zeros((count, episode_length, states), np.int64)
  for t in reversed(range(episode_length)):
    q = mean_rewards + np.einsum("tsan,tn->tsa", transitions, values[:, t + 1])
    # Ties (e.g. untried actions of a posterior-mean MDP) are exact; a 1e-9 jitter picks one at
    # random and cannot reorder actions whose values differ by more.
    scores = q if rng is None else q + 1e-9 * rng.random(q.shape)
    policy[:, t] = np.argmax(scores, axis=-1)
    values[:, t] = np.take_along_axis(q, policy[:, t, :, None], axis=-1)[..., 0]
  return policy, values


def _as_arrays(tasks) -> tuple[np.ndarray, np.ndarray]:
  """``(transitions, mean_rewards)`` as float64 NumPy arrays with a task axis, rows normalised."""
  if hasattr(tasks, "transitions"):
    transitions, mean_rewards = tasks.transitions, tasks.mean_rewards
  else:
    transitions, mean_rewards = tasks
  transitions = np.asarray(transitions, np.float64)
  mean_rewards = np.asarray(mean_rewards, np.float64)
  if transitions.ndim != 4 or transitions.shape[1] != transitions.shape[3] or (
      mean_rewards.shape != transitions.shape[:3]):
    hint = (" (one task: add a task axis, or draw a batch with metajax.envs.sample_tasks)"
            if transitions.ndim == 3 else "")
    raise ValueError(f"tasks must hold transitions [tasks, states, actions, states] and "
                     f"mean_rewards [tasks, states, actions]; got {transitions.shape} and "
                     f"{mean_rewards.shape}{hint}.")
  if np.any(transitions < 0) or not np.allclose(transitions.sum(-1), 1.0, atol=1e-4):
    raise ValueError("every transitions[t, s, a] must be a probability vector (>= 0, summing to "
                     "1 within 1e-4).")
  return transitions / transitions.sum(-1, keepdims=True), mean_rewards


def _check_policy(policy, shape: tuple[int, int, int], actions: int) -> np.ndarray:
  policy = np.asarray(policy)
  if policy.shape != shape or not np.issubdtype(policy.dtype, np.integer):
    raise ValueError(f"a strategy must return integer actions of shape [tasks, episode_length, "
                     f"states] = {list(shape)}; got dtype {policy.dtype}, shape "
                     f"{list(policy.shape)}.")
  if policy.size and (policy.min() < 0 or policy.max() >= actions):
    raise ValueError(f"a strategy returned actions in [{policy.min()}, {policy.max()}]; the MDP "
                     f"has actions 0 .. {actions - 1}.")
  return policy


def _read_only(array: np.ndarray) -> np.ndarray:
  """A read-only copy: a strategy may keep its belief, and the trial goes on."""
  copy = array.copy()
  copy.flags.writeable = False
  return copy


def _empty_belief() -> Belief:
  return Belief(np.zeros((1, 1, 1, 1), np.int64), np.zeros((1, 1, 1)),
                np.zeros((1, 1, 1), np.int64), 0, 1)
