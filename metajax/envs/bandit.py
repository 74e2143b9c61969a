"""Bernoulli multi-armed bandits (RL², Section 3.1)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.core._checks import check_steps
from metajax.core.types import Array
from metajax.envs.core import Box, Discrete, Environment


class BanditTask(NamedTuple):
  """One bandit task.

  Attributes:
    means: ``[arms]`` success probability of each arm.

  References:
    Duan et al., "RL²", 2016, Section 3.1. https://arxiv.org/abs/1611.02779
  """

  means: Array


def bernoulli_bandit(*, arms: int = 5, pulls: int = 10) -> Environment:
  """A ``arms``-armed Bernoulli bandit with arm means drawn from U[0, 1].

  Each pull is one episode of length 1 (``done`` after every step); a trial is
  ``pulls`` episodes on the same task, so :attr:`Environment.episode_length` is 1
  and a trial is ``pulls`` episodes (recorded in the environment's name; rollouts
  take the episode count as an argument). The observation is a constant ``[1.0]``: everything the
  agent learns comes through the previous action and reward. ``step``'s ``info`` holds
  ``"expected_reward"``, the pulled arm's mean (what ``rl2(..., expected_rewards=True)``
  trains on).

  Args:
    arms: number of arms ``k``.
    pulls: pulls per trial ``n`` (informational; rollouts choose the episode count).

  Returns:
    An :class:`Environment`; its tasks are :class:`BanditTask`.

  Example:
    >>> import jax
    >>> env = bernoulli_bandit(arms=5, pulls=10)
    >>> env.sample_task(jax.random.key(0)).means.shape
    (5,)

  References:
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement
    Learning", 2016, Section 3.1. https://arxiv.org/abs/1611.02779
  """
  arms = check_steps(arms, "arms", minimum=2)
  pulls = check_steps(pulls, "pulls", minimum=1)

  def sample_task(key):
    return BanditTask(jax.random.uniform(key, (arms,)))

  def reset(key, task):
    del key, task
    return jnp.ones((1,), jnp.float32), jnp.zeros((), jnp.int32)

  def step(key, state, action, task):
    mean = task.means[action]
    reward = jax.random.bernoulli(key, mean).astype(jnp.float32)
    return (jnp.ones((1,), jnp.float32), state + 1, reward, jnp.array(True),
            {"expected_reward": mean.astype(jnp.float32)})

  return Environment(reset=reset, step=step, sample_task=sample_task,
                     observation_space=Box(0.0, 1.0, (1,)), action_space=Discrete(arms),
                     episode_length=1, name=f"bernoulli_bandit_k{arms}_n{pulls}")

