"""gymnax environments through the :class:`~metajax.envs.Environment` interface."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from metajax.core.types import PRNGKey, PyTree
from metajax.envs.core import Box, Discrete, Environment


class GymnaxTask(NamedTuple):
  """A gymnax task: its ``EnvParams`` plus the key its ``reset_env`` draws the task from.

  gymnax meta-RL environments (``BernoulliBandit-misc``, ``MetaMaze-misc``) draw the
  task (arm probabilities, goal) inside ``reset``; fixing the reset key fixes the
  task, so every episode of a trial replays the same task.

  Attributes:
    params: the gymnax ``EnvParams``.
    reset_key: the PRNG key passed to gymnax's ``reset_env`` at every reset.

  References:
    Lange, "gymnax", 2022. https://github.com/RobertTLange/gymnax
  """

  params: PyTree
  reset_key: PRNGKey


def from_gymnax(env_id: str | Any, env_params: PyTree | None = None, *,
                episode_length: int | None = None) -> Environment:
  """Wraps a gymnax environment.

  ``step`` calls gymnax's ``step_env`` (no auto-reset) and reports
  ``done = terminated or time >= max_steps_in_episode``; rewards are cast to
  float32 and observations flattened to float vectors.

  Args:
    env_id: a gymnax id such as ``"BernoulliBandit-misc"`` or ``"MetaMaze-misc"``,
      or an environment instance (then give ``env_params``).
    env_params: the gymnax ``EnvParams`` (default: the environment's defaults).
    episode_length: overrides ``env_params.max_steps_in_episode``.

  Returns:
    An :class:`Environment` whose tasks are :class:`GymnaxTask`.

  Example:
    >>> env = from_gymnax("BernoulliBandit-misc")  # doctest: +SKIP
    >>> env.action_space  # doctest: +SKIP
    Discrete(n=2)

  References:
    Lange, "gymnax: A JAX-based Reinforcement Learning Environment Library", 2022.
    https://github.com/RobertTLange/gymnax
  """
  try:
    import gymnax
    from gymnax.environments import spaces as gspaces
  except ImportError as error:  # pragma: no cover - exercised only without gymnax
    raise ImportError("from_gymnax needs gymnax: pip install 'metajax[rl]'.") from error
  if isinstance(env_id, str):
    env, default_params = gymnax.make(env_id)
    name = env_id
  else:
    env, default_params, name = env_id, env_id.default_params, type(env_id).__name__
  params = default_params if env_params is None else env_params
  if episode_length is not None:
    # Keep the field's Python type: gymnax mixes it into lax.select with its float defaults.
    kind = type(params.max_steps_in_episode)
    params = params.replace(max_steps_in_episode=kind(episode_length))
  length = int(params.max_steps_in_episode)

  action_space = env.action_space(params)
  if isinstance(action_space, gspaces.Discrete):
    space = Discrete(int(action_space.n))
  elif isinstance(action_space, gspaces.Box):
    space = Box(float(jnp.min(action_space.low)), float(jnp.max(action_space.high)),
                tuple(action_space.shape))
  else:
    raise TypeError(f"gymnax action space {type(action_space).__name__} is not supported; "
                    "only Discrete and Box actions are.")
  obs_shape = (int(jnp.prod(jnp.array(env.observation_space(params).shape))),)

  def flat(obs):
    return jnp.reshape(obs, obs_shape).astype(jnp.float32)

  def sample_task(key):
    return GymnaxTask(params, key)

  def reset(key, task):
    del key
    obs, state = env.reset_env(task.reset_key, task.params)
    return flat(obs), state

  def step(key, state, action, task):
    obs, state, reward, terminated, info = env.step_env(key, state, action, task.params)
    done = jnp.logical_or(terminated, env.is_truncated(state, task.params))
    return flat(obs), state, jnp.asarray(reward, jnp.float32), done, dict(info)

  return Environment(reset=reset, step=step, sample_task=sample_task,
                     observation_space=Box(-float("inf"), float("inf"), obs_shape),
                     action_space=space,
                     episode_length=length, name=f"gymnax:{name}")
