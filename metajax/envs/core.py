"""The environment interface: pure ``reset``/``step`` functions of a task pytree.

An :class:`Environment` is a value of pure functions in the style of gymnax:
``reset(key, task) -> (obs, state)`` and
``step(key, state, action, task) -> (obs, state, reward, done, info)``. The
environment-params pytree *is* the task (arm means of a bandit, the transition
table of an MDP, the goal of a navigation task), drawn by ``sample_task(key)``;
everything is jit-, vmap- and scan-friendly, so rollouts, inner loops and outer
updates compile into one step.

``step`` does not reset on ``done``; the rollout decides what to do at an episode
boundary (RL² resets the environment but keeps its hidden state).

Bad environments are caught on concrete values before anything is compiled by
:func:`check_env`, and out-of-range actions by :func:`check_action`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import Array, PRNGKey, PyTree


class Discrete(NamedTuple):
  """A discrete action space.

  Attributes:
    n: number of actions, ``0 .. n-1``.

  Example:
    >>> Discrete(3).n
    3
  """

  n: int


class Box(NamedTuple):
  """A box of real vectors.

  Attributes:
    low: lower bound of every coordinate.
    high: upper bound of every coordinate.
    shape: the vector shape.

  Example:
    >>> Box(-1.0, 1.0, (2,)).shape
    (2,)
  """

  low: float
  high: float
  shape: tuple[int, ...]


class Environment(NamedTuple):
  """A task-parameterised environment as pure functions.

  Attributes:
    reset: ``reset(key, task) -> (obs, state)``.
    step: ``step(key, state, action, task) -> (obs, state, reward, done, info)``;
      ``reward`` is a float scalar, ``done`` a bool scalar, ``info`` a dict.
    sample_task: ``sample_task(key) -> task``, the task distribution.
    observation_space: a :class:`Box` (observations are float vectors).
    action_space: :class:`Discrete` or :class:`Box`.
    episode_length: steps after which ``step`` reports ``done`` (the time limit).
    name: the environment's name.

  Example:
    >>> import jax, metajax.envs as envs
    >>> env = envs.bernoulli_bandit(arms=3, pulls=5)
    >>> task = env.sample_task(jax.random.key(0))
    >>> obs, state = env.reset(jax.random.key(1), task)
    >>> obs, state, reward, done, info = env.step(jax.random.key(2), state, 1, task)
    >>> bool(done)
    True
  """

  reset: Callable[[PRNGKey, PyTree], tuple[Array, Any]]
  step: Callable[[PRNGKey, Any, Array, PyTree], tuple[Array, Any, Array, Array, dict]]
  sample_task: Callable[[PRNGKey], PyTree]
  observation_space: Box
  action_space: Discrete | Box
  episode_length: int
  name: str


def sample_tasks(env: Environment, key: PRNGKey, count: int) -> PyTree:
  """Draws tasks from an environment's task distribution.

  Args:
    env: the environment.
    key: PRNG key.
    count: number of tasks.

  Returns:
    ``count`` tasks stacked on a leading task axis.

  Example:
    >>> import jax, metajax.envs as envs
    >>> sample_tasks(envs.bernoulli_bandit(arms=4), jax.random.key(0), 8).means.shape
    (8, 4)
  """
  return jax.vmap(env.sample_task)(jax.random.split(key, count))


def check_action(space: Discrete | Box, action: Any) -> None:
  """Raises if a concrete action lies outside ``space``.

  Args:
    space: the environment's action space.
    action: one action (an int for :class:`Discrete`, a vector for :class:`Box`).

  Raises:
    ValueError: a discrete action outside ``[0, n)``, a box action of the wrong
      shape or with non-finite entries.

  Example:
    >>> check_action(Discrete(3), 2)
  """
  value = np.asarray(action)
  if isinstance(space, Discrete):
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
      raise ValueError(
          f"a Discrete({space.n}) action must be an integer scalar, got {value!r} with shape "
          f"{value.shape} and dtype {value.dtype}; pass one int in [0, {space.n})."
      )
    if not 0 <= int(value) < space.n:
      raise ValueError(
          f"action {int(value)} is out of range for Discrete({space.n}): actions must lie in "
          f"[0, {space.n}); sample them from a categorical over {space.n} logits."
      )
    return
  if value.shape != tuple(space.shape):
    raise ValueError(
        f"a Box action must have shape {tuple(space.shape)}, got {value.shape} ({value!r}); "
        "return one action vector per step."
    )
  if not np.all(np.isfinite(value)):
    raise ValueError(f"action {value!r} is not finite; check the policy for NaN/inf outputs.")


def check_env(env: Environment, task: PyTree | None = None, key: PRNGKey | None = None) -> None:
  """Host-side probe of an environment: one reset and one step per probe action.

  Runs eagerly on concrete values (nothing is compiled) and checks the contract
  every rollout relies on: observations of ``observation_space.shape`` and a
  float dtype, finite; rewards finite float scalars; ``done`` a boolean scalar;
  and the environment stepping without error on every discrete action (or on
  ``low``, ``high`` and the middle of a box).

  Args:
    env: the environment.
    task: a task; defaults to ``env.sample_task(key)``.
    key: PRNG key (default ``jax.random.key(0)``).

  Raises:
    TypeError: ``env`` is not an :class:`Environment`.
    ValueError: an observation of the wrong shape or non-finite, a non-finite or
      non-scalar reward, a non-scalar ``done``; the message names the value.

  Example:
    >>> import jax, metajax.envs as envs
    >>> envs.check_env(envs.bernoulli_bandit(arms=5, pulls=10))
  """
  if not isinstance(env, Environment):
    raise TypeError(
        f"env must be a metajax.envs.Environment, got {type(env).__name__}; build one with "
        "metajax.envs.bernoulli_bandit(...) or wrap a gymnax environment with "
        "metajax.envs.from_gymnax(...)."
    )
  key = jax.random.key(0) if key is None else key
  task_key, reset_key, step_key = jax.random.split(key, 3)
  task = env.sample_task(task_key) if task is None else task
  obs, state = env.reset(reset_key, task)
  _check_obs(env, obs, "reset")
  space = env.action_space
  if isinstance(space, Discrete):
    actions = [jnp.asarray(a, jnp.int32) for a in range(space.n)]
  else:
    shape = tuple(space.shape)
    actions = [jnp.full(shape, v, jnp.float32)
               for v in (space.low, space.high, 0.5 * (space.low + space.high))]
  for action in actions:
    check_action(space, action)
    obs_next, _, reward, done, info = env.step(step_key, state, action, task)
    where = f"step(action={np.asarray(action).tolist()})"
    _check_obs(env, obs_next, where)
    reward = np.asarray(reward)
    if reward.shape != () or not np.issubdtype(reward.dtype, np.floating):
      raise ValueError(
          f"{env.name}: {where} returned reward {reward!r} with shape {reward.shape} and dtype "
          f"{reward.dtype}; a reward must be one float scalar (cast with jnp.float32)."
      )
    if not np.isfinite(reward):
      raise ValueError(
          f"{env.name}: {where} returned a non-finite reward {float(reward)}; rewards must be "
          "finite (clip or guard the computation that produced it)."
      )
    if np.shape(done) != ():
      raise ValueError(
          f"{env.name}: {where} returned done={np.asarray(done)!r} of shape {np.shape(done)}; "
          "done must be one boolean scalar."
      )
    if not isinstance(info, dict):
      raise ValueError(f"{env.name}: {where} returned info of type {type(info).__name__}; "
                       "info must be a dict (possibly empty).")


def _check_obs(env: Environment, obs: Any, where: str) -> None:
  value = np.asarray(obs)
  want = tuple(env.observation_space.shape)
  if value.shape != want:
    raise ValueError(
        f"{env.name}: {where} returned an observation of shape {value.shape}, but "
        f"observation_space.shape is {want}; return a float vector of shape {want} or fix "
        "observation_space."
    )
  if not np.issubdtype(value.dtype, np.floating):
    raise ValueError(
        f"{env.name}: {where} returned an observation of dtype {value.dtype}; observations "
        "must be float arrays (cast with jnp.float32)."
    )
  if not np.all(np.isfinite(value)):
    raise ValueError(f"{env.name}: {where} returned a non-finite observation {value!r}.")
