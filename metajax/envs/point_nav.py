"""2D point navigation to a per-task goal (MAML, Section 5.3)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.core._checks import check_positive, check_steps
from metajax.core.types import Array
from metajax.envs.core import Box, Environment


class PointGoalTask(NamedTuple):
  """One navigation task.

  Attributes:
    goal: ``[2]`` goal position.

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.3. https://arxiv.org/abs/1703.03400
  """

  goal: Array


def point_navigation(*, goal_range: float = 0.5, max_action: float = 0.1,
                     horizon: int = 100) -> Environment:
  """A point mass in the plane moving toward a goal drawn per task.

  The agent starts at the origin and observes its position; an action is a
  displacement clipped to ``[-max_action, max_action]`` per coordinate; the reward
  is the negative Euclidean distance to the goal after the move; episodes last
  ``horizon`` steps. Goals are uniform in ``[-goal_range, goal_range]^2``.

  Args:
    goal_range: half-width of the goal square (0.5 in the paper).
    max_action: per-coordinate action clip (0.1 in the paper).
    horizon: steps per episode (100 in the paper).

  Returns:
    An :class:`Environment`; its tasks are :class:`PointGoalTask`.

  Example:
    >>> import jax
    >>> env = point_navigation()
    >>> env.sample_task(jax.random.key(0)).goal.shape
    (2,)

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017, Section 5.3. https://arxiv.org/abs/1703.03400
  """
  goal_range = check_positive(goal_range, "goal_range")
  max_action = check_positive(max_action, "max_action")
  horizon = check_steps(horizon, "horizon", minimum=1)

  def sample_task(key):
    return PointGoalTask(jax.random.uniform(key, (2,), minval=-goal_range, maxval=goal_range))

  def reset(key, task):
    del key, task
    return jnp.zeros((2,), jnp.float32), (jnp.zeros((2,), jnp.float32), jnp.zeros((), jnp.int32))

  def step(key, state, action, task):
    del key
    pos, t = state
    pos = pos + jnp.clip(action, -max_action, max_action)
    reward = -jnp.sqrt(jnp.sum(jnp.square(pos - task.goal)))
    t = t + 1
    return pos, (pos, t), reward.astype(jnp.float32), t >= horizon, {}

  return Environment(reset=reset, step=step, sample_task=sample_task,
                     observation_space=Box(-float("inf"), float("inf"), (2,)),
                     action_space=Box(-max_action, max_action, (2,)),
                     episode_length=horizon, name="point_navigation")
