"""Task-parameterised environments for meta-reinforcement learning.

Pure ``reset``/``step`` functions of an environment-params pytree (the task), so
rollouts run under ``jax.lax.scan`` and ``jax.vmap`` over tasks.
"""

from metajax.envs.bandit import BanditTask as BanditTask
from metajax.envs.bandit import bernoulli_bandit as bernoulli_bandit
from metajax.envs.core import Box as Box
from metajax.envs.core import Discrete as Discrete
from metajax.envs.core import Environment as Environment
from metajax.envs.core import check_action as check_action
from metajax.envs.core import check_env as check_env
from metajax.envs.core import sample_tasks as sample_tasks
from metajax.envs.gymnax_adapter import GymnaxTask as GymnaxTask
from metajax.envs.gymnax_adapter import from_gymnax as from_gymnax
from metajax.envs.point_nav import PointGoalTask as PointGoalTask
from metajax.envs.point_nav import point_navigation as point_navigation
from metajax.envs.tabular_mdp import TabularMDPTask as TabularMDPTask
from metajax.envs.tabular_mdp import tabular_mdp as tabular_mdp
