"""Random tabular MDPs (RL², Section 3.2)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.core._checks import check_steps
from metajax.core.types import Array
from metajax.envs.core import Box, Discrete, Environment


class TabularMDPTask(NamedTuple):
  """One MDP.

  Attributes:
    transitions: ``[states, actions, states]`` next-state probabilities.
    mean_rewards: ``[states, actions]`` expected rewards.

  References:
    Duan et al., "RL²", 2016, Section 3.2. https://arxiv.org/abs/1611.02779
  """

  transitions: Array
  mean_rewards: Array


def tabular_mdp(*, states: int = 10, actions: int = 5, episode_length: int = 10,
                reward_mean: float = 1.0, reward_std: float = 1.0) -> Environment:
  """Random finite MDPs: flat-Dirichlet transitions, Normal rewards.

  Each task draws ``P(.|s, a) ~ Dirichlet(1, ..., 1)`` and a mean reward
  ``r(s, a) ~ N(reward_mean, 1)``; a step from ``s`` with action ``a`` pays
  ``N(r(s, a), reward_std^2)`` and moves to ``s' ~ P(.|s, a)``. Episodes start in
  state 0 and last ``episode_length`` steps; the observation is the one-hot state.
  ``step``'s ``info`` holds ``"expected_reward"``, ``r(s, a)`` (what
  ``rl2(..., expected_rewards=True)`` trains on).
  The defaults (10 states, 5 actions, 10-step episodes, N(1, 1) means, unit reward
  noise) follow our reading of RL² Section 3.2, which follows the random-MDP
  set-up of PSRL (Osband et al., 2013); the start state is our choice (the paper
  does not pin it down in the text we had).

  Args:
    states: number of states.
    actions: number of actions.
    episode_length: steps per episode.
    reward_mean: mean of the distribution of the mean rewards.
    reward_std: standard deviation of the reward noise around ``r(s, a)``.

  Returns:
    An :class:`Environment`; its tasks are :class:`TabularMDPTask`.

  Example:
    >>> import jax
    >>> env = tabular_mdp()
    >>> env.sample_task(jax.random.key(0)).transitions.shape
    (10, 5, 10)

  References:
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement
    Learning", 2016, Section 3.2. https://arxiv.org/abs/1611.02779
  """
  states = check_steps(states, "states", minimum=1)
  actions = check_steps(actions, "actions", minimum=2)
  episode_length = check_steps(episode_length, "episode_length", minimum=1)

  def sample_task(key):
    k_p, k_r = jax.random.split(key)
    transitions = jax.random.dirichlet(k_p, jnp.ones(states), (states, actions))
    mean_rewards = reward_mean + jax.random.normal(k_r, (states, actions))
    return TabularMDPTask(transitions, mean_rewards)

  def observe(s):
    return jax.nn.one_hot(s, states, dtype=jnp.float32)

  def reset(key, task):
    del key, task
    state = (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))  # (state, time)
    return observe(state[0]), state

  def step(key, env_state, action, task):
    s, t = env_state
    k_r, k_s = jax.random.split(key)
    mean = task.mean_rewards[s, action]
    reward = mean + reward_std * jax.random.normal(k_r)
    s_next = jax.random.categorical(k_s, jnp.log(task.transitions[s, action]))
    t = t + 1
    return (observe(s_next), (s_next.astype(jnp.int32), t), reward.astype(jnp.float32),
            t >= episode_length, {"expected_reward": mean.astype(jnp.float32)})

  return Environment(reset=reset, step=step, sample_task=sample_task,
                     observation_space=Box(0.0, 1.0, (states,)), action_space=Discrete(actions),
                     episode_length=episode_length, name=f"tabular_mdp_s{states}_a{actions}")
