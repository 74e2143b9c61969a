"""MAML for reinforcement learning: policy-gradient inner loop, unbiased meta-gradient.

The inner loop is vanilla policy gradient (REINFORCE with the linear feature
baseline of Duan et al., 2016) on episodes sampled from the current policy:
``theta' = theta + alpha * g(theta; episodes)`` with
``g = grad sum_t log pi_theta(a_t|s_t) gamma^t (R_t - b_t)``. The meta-objective is
the expected return after adaptation, *averaged over the inner episodes*,
``J(theta) = E_{episodes ~ pi_theta}[ return of pi_{theta'} ]`` (the sampled-MAML
objective, "formulation I" of Rothfuss et al., 2019). Its gradient has two parts:
the path through ``theta'`` (second order, through the inner log-probabilities)
and the score-function term of the inner episodes' distribution, which the
original MAML-RL code dropped. Both come out of one ``jax.grad`` of a DiCE-style
objective: DiCE on the outer episodes plus ``(magic(log p(inner episodes)) - 1) *
outer return``, where ``magic(x) = exp(x - stop_gradient(x))``. The result is
exactly unbiased for ``J`` (tested against enumeration of all trajectories of a
tiny bandit in ``tests/test_meta_rl.py``).

The outer update is a policy-gradient step through an optax optimizer
(:func:`make_meta_rl_step`, Adam by default) or the paper's TRPO step
(:func:`make_trpo_meta_rl_step`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from metajax.core._checks import check_positive, check_steps
from metajax.core.meta_learner import MetaLearner, Metrics, grad_of_task_loss
from metajax.core.meta_step import MetaTrainState
from metajax.core.types import Array, PRNGKey, PyTree
from metajax.envs.core import Discrete, Environment, check_env, sample_tasks


class Policy(NamedTuple):
  """A stochastic policy over an environment's actions.

  Attributes:
    init: ``init(key) -> params``.
    apply: ``apply(params, obs) -> logits`` (discrete) or ``(mean, log_std)`` (box).
    discrete: whether actions are categorical (else diagonal Gaussian).

  Example:
    >>> import jax, metajax.envs as envs
    >>> policy = mlp_policy(envs.bernoulli_bandit(arms=3, pulls=1), hidden=(4,))
    >>> policy.discrete, policy.apply(policy.init(jax.random.key(0)), jax.numpy.ones(1)).shape
    (True, (3,))

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.3 (MLP policies, Gaussian for continuous
    actions); Williams, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992 (the score-function gradient).
  """

  init: Callable[[PRNGKey], PyTree]
  apply: Callable[[PyTree, Array], PyTree]
  discrete: bool


class Episodes(NamedTuple):
  """A batch of episodes, ``[episodes, T, ...]``; ``mask`` is 0 after an episode ended."""

  obs: Array
  actions: Array
  rewards: Array
  mask: Array


def mlp_policy(env: Environment, *, hidden: tuple[int, ...] = (100, 100),
               init_log_std: float = 0.0) -> Policy:
  """An MLP policy (ReLU, the MAML paper's 2 x 100 by default).

  Categorical over ``env.action_space.n`` actions, or a diagonal Gaussian with a
  learned state-independent log standard deviation for box actions.

  Args:
    env: the environment whose observation and action spaces size the network.
    hidden: hidden-layer widths.
    init_log_std: initial log standard deviation (box actions).

  Returns:
    A :class:`Policy`.

  Example:
    >>> import jax, metajax.envs as envs
    >>> policy = mlp_policy(envs.point_navigation(), hidden=(8,))
    >>> mean, log_std = policy.apply(policy.init(jax.random.key(0)), jax.numpy.zeros(2))
    >>> mean.shape
    (2,)
  """
  discrete = isinstance(env.action_space, Discrete)
  in_dim = int(math.prod(env.observation_space.shape))
  out_dim = env.action_space.n if discrete else int(math.prod(env.action_space.shape))
  sizes = (in_dim, *hidden, out_dim)

  def init(key):
    keys = jax.random.split(key, len(sizes) - 1)
    layers = [{"w": jax.random.normal(k, (a, b)) * math.sqrt(2.0 / a) * (0.01 if i == len(
        sizes) - 2 else 1.0), "b": jnp.zeros((b,))}
              for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))]
    params = {"layers": layers}
    if not discrete:
      params["log_std"] = jnp.full((out_dim,), init_log_std, jnp.float32)
    return params

  def apply(params, obs):
    x = jnp.reshape(obs, (in_dim,))
    for layer in params["layers"][:-1]:
      x = jax.nn.relu(x @ layer["w"] + layer["b"])
    out = x @ params["layers"][-1]["w"] + params["layers"][-1]["b"]
    return out if discrete else (out, params["log_std"])

  return Policy(init, apply, discrete)


def _log_prob(policy: Policy, dist, action):
  if policy.discrete:
    return jax.nn.log_softmax(dist)[action]
  mean, log_std = dist
  z = (action - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi))


def _sample(policy: Policy, key, dist):
  if policy.discrete:
    return jax.random.categorical(key, dist)
  mean, log_std = dist
  return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def sample_episodes(env: Environment, policy: Policy, params: PyTree, task: PyTree,
                    key: PRNGKey, count: int) -> Episodes:
  """``count`` episodes of ``env.episode_length`` steps with actions from ``policy``.

  Parameters are not differentiated here (log-probabilities are recomputed by the
  objectives), so the samples are constants of the meta-gradient.
  """
  params = jax.lax.stop_gradient(params)

  def one(key):
    k_reset, k_steps = jax.random.split(key)
    obs, state = env.reset(k_reset, task)

    def body(carry, step_key):
      obs, state, alive = carry
      k_act, k_env = jax.random.split(step_key)
      action = _sample(policy, k_act, policy.apply(params, obs))
      obs_next, state, reward, done, _ = env.step(k_env, state, action, task)
      out = (obs, action, jnp.asarray(reward, jnp.float32) * alive, alive)
      return (obs_next, state, alive * (1.0 - jnp.asarray(done, jnp.float32))), out

    _, out = jax.lax.scan(body, (obs, state, jnp.ones(())),
                          jax.random.split(k_steps, env.episode_length))
    return Episodes(*out)

  return jax.vmap(one)(jax.random.split(key, count))


def magic_box(x: Array) -> Array:
  """DiCE's magic box: ``exp(x - stop_gradient(x))``, 1 in value, ``d/dx = 1`` (Foerster 2018)."""
  return jnp.exp(x - jax.lax.stop_gradient(x))


def _discounts(length: int, gamma: float) -> Array:
  return gamma ** jnp.arange(length, dtype=jnp.float32)


def returns_to_go(rewards: Array, gamma: float) -> Array:
  """``R_t = sum_{t' >= t} gamma^(t'-t) r_t'`` along the last axis."""
  def back(carry, r):
    carry = r + gamma * carry
    return carry, carry

  _, out = jax.lax.scan(back, jnp.zeros(rewards.shape[:-1]), jnp.moveaxis(rewards, -1, 0),
                        reverse=True)
  return jnp.moveaxis(out, 0, -1)


def linear_feature_baseline(episodes: Episodes, gamma: float, reg: float = 1e-5) -> Array:
  """Least-squares fit of the returns-to-go on ``(o, o^2, t, t^2, t^3, 1)`` (Duan et al., 2016).

  As rllab's baseline, observations are clipped to ``[-10, 10]``; the features are scaled to
  unit norm before the ridge ``reg`` is added, and a non-finite solution is solved again with
  10x the ridge (up to 1e4 x). A policy that runs straight ahead makes ``o`` and ``t``
  collinear (and ``o_1^2 = o_2^2`` along a diagonal): the float32 normal equations were then
  singular even with a ridge of 0.1 next to sums of ``o^4`` near 1e7, and the fit NaN
  (MAML-RL test on 2D navigation, 2026-11-30). The fit is 0 if no ridge gives a finite one.

  Returns the fitted values ``[episodes, T]`` (a constant of the meta-gradient).
  """
  count, length = episodes.rewards.shape
  obs = jnp.clip(jnp.reshape(episodes.obs, (count, length, -1)), -10.0, 10.0)
  steps = jnp.broadcast_to(jnp.arange(length, dtype=jnp.float32)[None, :, None] / 100.0,
                           (count, length, 1))
  features = jnp.concatenate([obs, obs ** 2, steps, steps ** 2, steps ** 3,
                              jnp.ones_like(steps)], axis=-1) * episodes.mask[..., None]
  targets = returns_to_go(episodes.rewards, gamma) * episodes.mask
  flat_f = features.reshape(-1, features.shape[-1])
  # Columns scaled to unit norm, so that the ridge is not lost in float32 next to the o^4 sums.
  norms = jnp.sqrt(jnp.sum(jnp.square(flat_f), axis=0))
  norms = jnp.where(norms > 0, norms, 1.0)
  scaled = flat_f / norms
  gram, rhs = scaled.T @ scaled, scaled.T @ targets.reshape(-1)
  ridges = reg * 10.0 ** jnp.arange(5, dtype=gram.dtype)
  coefs = jax.vmap(lambda r: jnp.linalg.solve(gram + r * jnp.eye(gram.shape[-1]), rhs))(ridges)
  finite = jnp.all(jnp.isfinite(coefs), axis=-1)
  coef = jnp.where(jnp.any(finite), coefs[jnp.argmax(finite)], 0.0) / norms
  return jax.lax.stop_gradient((features @ coef) * episodes.mask)


def dice_objective(policy: Policy, params: PyTree, episodes: Episodes, *, gamma: float,
                   baseline: str) -> Array:
  """DiCE estimate of the expected discounted return, mean over episodes.

  ``mean_m sum_t [ magic(sum_{t'<=t} l_t') gamma^t r_t + (1 - magic(l_t)) gamma^t b_t ]``
  with ``l_t`` the action log-probabilities under ``params``. Its value is the
  mean return; every order of its derivatives is an unbiased estimate of the
  corresponding derivative of the expected return (for a baseline that does not
  depend on the episode's own actions).

  References:
    Foerster et al., "DiCE: The Infinitely Differentiable Monte Carlo Estimator",
    ICML 2018. https://arxiv.org/abs/1802.05098
  """
  log_probs = _episode_log_probs(policy, params, episodes)
  discount = _discounts(episodes.rewards.shape[-1], gamma)
  cumulative = jnp.cumsum(log_probs, axis=-1)
  value = jnp.sum(magic_box(cumulative) * discount * episodes.rewards, axis=-1)
  if baseline == "linear":
    fitted = linear_feature_baseline(episodes, gamma)
    value = value + jnp.sum((1.0 - magic_box(log_probs)) * discount * fitted, axis=-1)
  return jnp.mean(value)


def reinforce_surrogate(policy: Policy, params: PyTree, episodes: Episodes, *, gamma: float,
                        baseline: str, normalize: bool = True) -> Array:
  """REINFORCE surrogate: the mean over all valid steps of ``l_t * A_t``, ``A_t`` constant.

  ``A_t = R_t - b_t`` (discounted return-to-go minus the baseline), centred and scaled to unit
  variance over the batch when ``normalize`` (as rllab's sampler, which the MAML-RL code used,
  does; without it a step size such as 0.1 is far too large for returns of -50). Its gradient is
  the vanilla policy gradient direction; its value is not the return.

  References:
    Williams, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992.
  """
  log_probs = _episode_log_probs(policy, params, episodes)
  advantages = returns_to_go(episodes.rewards, gamma)
  if baseline == "linear":
    advantages = advantages - linear_feature_baseline(episodes, gamma)
  count = jnp.maximum(jnp.sum(episodes.mask), 1.0)
  if normalize:
    mean = jnp.sum(advantages * episodes.mask) / count
    std = jnp.sqrt(jnp.sum(jnp.square(advantages - mean) * episodes.mask) / count)
    advantages = (advantages - mean) / (std + 1e-8)
  advantages = jax.lax.stop_gradient(advantages * episodes.mask)
  return jnp.sum(log_probs * advantages) / count


def _episode_log_probs(policy, params, episodes):
  def one(obs, action):
    return _log_prob(policy, policy.apply(params, obs), action)

  return jax.vmap(jax.vmap(one))(episodes.obs, episodes.actions) * episodes.mask


def _mean_return(episodes: Episodes, gamma: float) -> Array:
  discount = _discounts(episodes.rewards.shape[-1], gamma)
  return jnp.mean(jnp.sum(discount * episodes.rewards, axis=-1))


def post_adaptation_objective(policy: Policy, meta_params: PyTree, inner: list[Episodes],
                              outer: Episodes, *, inner_lr: float, gamma: float, baseline: str,
                              first_order: bool = False, score_term: bool = True,
                              normalize_advantages: bool = True) -> tuple[Array, PyTree]:
  """The meta-objective for fixed samples: adapt on ``inner`` batches, score ``outer``.

  ``theta_{k+1} = theta_k + inner_lr * grad surrogate(theta_k; inner[k])`` (see
  :func:`reinforce_surrogate`) and the result is ``DiCE(theta_K; outer) +
  (magic(sum_k log p(inner[k]; theta_k)) - 1) * R_outer``; its value is the outer
  mean return and its gradient an unbiased estimate of the gradient of
  ``E_inner[ J(theta_K) ]`` (``score_term=False`` drops the inner-sampling term, as
  the original MAML-RL code did; ``first_order=True`` stops gradients through the
  inner gradients, FOMAML). ``outer`` and ``inner[k]`` must have been sampled from
  ``theta_K`` and ``theta_k``.

  Returns:
    ``(objective, adapted_params)``.
  """
  params, inner_log_prob = _adapt(policy, meta_params, inner, (inner_lr,) * len(inner),
                                  gamma=gamma, baseline=baseline,
                                  normalize=normalize_advantages, first_order=first_order)
  objective = dice_objective(policy, params, outer, gamma=gamma, baseline=baseline)
  if score_term and not first_order and inner:
    outer_return = jax.lax.stop_gradient(_mean_return(outer, gamma))
    objective = objective + (magic_box(inner_log_prob) - 1.0) * outer_return
  return objective, params


def maml_rl(env: Environment, policy: Policy | None = None, *, inner_lr: float = 0.1,
            steps: int = 1, episodes: int = 20, gamma: float = 0.99, baseline: str = "linear",
            first_order: bool = False, score_term: bool = True, normalize_advantages: bool = True,
            seed: int = 0) -> MetaLearner:
  """MAML-RL (Finn et al., 2017, Section 5.3) as a :class:`metajax.MetaLearner` over env tasks.

  The task is an environment-params pytree (``env.sample_task(key)``):

  - ``init()`` -> ``{"policy": params}``;
  - ``task_loss(meta_params, task, key, step)`` -> ``(-meta_objective, metrics)``
    with ``metrics["pre_return"]`` / ``["post_return"]`` the mean episode returns
    before and after adaptation;
  - ``adapt(meta_params, task, key, *, steps=None, step_sizes=None)`` -> adapted policy
    params;
  - ``predict(meta_params, adapted, obs)`` -> action-distribution parameters;
  - ``evaluate(meta_params, task, key, *, steps=None, step_sizes=None)`` ->
    ``{"returns": [steps+1]}``, the mean return after 0, 1, ... ``steps`` policy-gradient
    steps; ``step_sizes`` gives each step's size (default ``inner_lr`` for all; a
    ``ValueError`` unless one finite positive number per step);
  - ``check_task(task)`` probes the environment (one task or a batch).

  Train with :func:`make_meta_rl_step` (an optax outer step) or
  :func:`make_trpo_meta_rl_step` (TRPO, as the paper).

  Args:
    env: the environment (any action space).
    policy: default :func:`mlp_policy` ``(100, 100)``.
    inner_lr: inner policy-gradient step size (0.1 for 2D navigation in the paper).
    steps: inner policy-gradient steps during meta-training.
    episodes: episodes per inner step and for the outer objective (20 in the paper).
    gamma: discount.
    baseline: ``"linear"`` (linear feature baseline) or ``"none"``.
    first_order: first-order MAML-RL.
    score_term: include the inner-sampling score term (unbiased meta-gradient). Its variance
      grows with the inner batch (the outer return times a sum of log-probability gradients
      over every inner step): on 2D navigation (20 episodes of 100 steps, Adam 3e-3) MAML-RL
      did not learn with it in 500 outer steps and did without it (docs/guide/meta_rl.md), so
      ``configs/maml_rl_navigation.py`` turns it off, as the paper's code did.
    normalize_advantages: centre and scale the inner step's advantages (rllab, as the paper).
    seed: initialisation seed.

  Returns:
    A :class:`metajax.MetaLearner` (RL semantics above).

  Example:
    >>> import jax, metajax.envs as envs
    >>> env = envs.bernoulli_bandit(arms=2, pulls=1)
    >>> learner = maml_rl(env, mlp_policy(env, hidden=(4,)), episodes=4, baseline="none")
    >>> task_loss = jax.jit(learner.task_loss)   # one compiled program for the rollouts
    >>> loss, metrics = task_loss(learner.init(), env.sample_task(jax.random.key(0)),
    ...                           jax.random.key(1), 0)
    >>> sorted(metrics)
    ['post_return', 'pre_return']

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017. https://arxiv.org/abs/1703.03400
    Foerster et al., "DiCE", ICML 2018; Rothfuss et al., "ProMP", ICLR 2019.
  """
  if baseline not in ("linear", "none"):
    raise ValueError(f"baseline must be 'linear' or 'none', got {baseline!r}.")
  inner_lr = check_positive(inner_lr, "inner_lr")
  steps = check_steps(steps, "steps")
  episodes = check_steps(episodes, "episodes", minimum=1)
  policy = mlp_policy(env) if policy is None else policy
  options = dict(inner_lr=inner_lr, gamma=gamma, baseline=baseline,
                 normalize_advantages=normalize_advantages)
  train_steps = steps

  def init():
    return {"policy": policy.init(jax.random.key(seed))}

  def step_sizes_for(n_steps, step_sizes):
    if step_sizes is None:
      return (inner_lr,) * n_steps
    step_sizes = tuple(step_sizes)
    if len(step_sizes) != n_steps or not all(
        isinstance(a, int | float) and not isinstance(a, bool) and 0 < a < math.inf
        for a in step_sizes):
      raise ValueError(f"step_sizes={step_sizes!r} must be {n_steps} finite numbers > 0, one "
                       f"per adaptation step; e.g. {(inner_lr,) * n_steps}.")
    return step_sizes

  def inner_batches(params, task, key, n_steps, step_sizes=None):
    """Samples the inner batches step by step (values only) and returns them."""
    batches = []
    for k, size in enumerate(step_sizes_for(n_steps, step_sizes)):
      batch = sample_episodes(env, policy, params, task, jax.random.fold_in(key, k), episodes)
      batches.append(batch)
      params = _adapt(policy, params, [batch], (size,), gamma=gamma, baseline=baseline,
                      normalize=normalize_advantages, first_order=False)[0]
    return batches, jax.lax.stop_gradient(params)

  def task_loss(meta_params, task, key, step):
    del step
    k_inner, k_outer = jax.random.split(key)
    batches, adapted = inner_batches(meta_params["policy"], task, k_inner, steps)
    outer = sample_episodes(env, policy, adapted, task, k_outer, episodes)
    objective, _ = post_adaptation_objective(policy, meta_params["policy"], batches, outer,
                                             first_order=first_order, score_term=score_term,
                                             **options)
    pre = _mean_return(batches[0], gamma) if batches else _mean_return(outer, gamma)
    return -objective, {"pre_return": pre, "post_return": _mean_return(outer, gamma)}

  def adapt(meta_params, task, key, *, steps=None, step_sizes=None):
    n = train_steps if steps is None else steps
    return inner_batches(meta_params["policy"], task, key, check_steps(n, "steps"),
                         step_sizes)[1]

  def predict(meta_params, adapted, obs):
    del meta_params
    return policy.apply(adapted, obs)

  def evaluate(meta_params, task, key, *, steps=None, step_sizes=None):
    n = check_steps(train_steps if steps is None else steps, "steps")
    batches, adapted = inner_batches(meta_params["policy"], task, key, n, step_sizes)
    final = sample_episodes(env, policy, adapted, task, jax.random.fold_in(key, n), episodes)
    returns = [_mean_return(b, gamma) for b in batches] + [_mean_return(final, gamma)]
    return {"returns": jnp.stack(returns)}

  reference = jax.eval_shape(env.sample_task, jax.random.key(0))

  def check_task(task):
    leaves, ref = jax.tree.leaves(task), jax.tree.leaves(reference)
    if leaves and np.ndim(leaves[0]) == len(ref[0].shape) + 1:
      task = jax.tree.map(lambda a: a[0], task)
    check_env(env, task)

  return MetaLearner(init=init, task_loss=task_loss, task_grad=grad_of_task_loss(task_loss),
                     adapt=adapt, predict=predict, evaluate=evaluate, check_task=check_task,
                     name="fomaml_rl" if first_order else "maml_rl")


def make_meta_rl_step(learner: MetaLearner, env: Environment,
                      optimizer: optax.GradientTransformation, *, tasks_per_step: int
                      ) -> Callable[[MetaTrainState, PRNGKey], tuple[MetaTrainState, Metrics]]:
  """One compiled outer step: sample tasks, vmap ``task_grad``, average, apply ``optimizer``.

  The optimizer minimises ``task_loss`` (the negated meta-objective), so a plain
  ``optax.sgd`` / ``optax.adam`` is a policy-gradient ascent on the return.

  Args:
    learner: a learner from :func:`maml_rl`.
    env: the environment it was built for (its ``sample_task`` draws the tasks).
    optimizer: the outer optax optimizer.
    tasks_per_step: tasks per outer step (the paper's meta-batch for 2D navigation
      is 20 tasks).

  Returns:
    ``meta_step(state, key) -> (state, metrics)`` over a
    :class:`metajax.MetaTrainState` (jitted, state donated; the key is folded with
    the step counter).

  Example:
    >>> import jax, optax, metajax, metajax.envs as envs
    >>> env = envs.bernoulli_bandit(arms=2, pulls=1)
    >>> learner = maml_rl(env, mlp_policy(env, hidden=(4,)), episodes=4)
    >>> state = metajax.init_meta_state(learner, optax.adam(1e-2))
    >>> step = make_meta_rl_step(learner, env, optax.adam(1e-2), tasks_per_step=2)
    >>> # state, metrics = step(state, jax.random.key(0))  (compiled once)
  """
  tasks_per_step = check_steps(tasks_per_step, "tasks_per_step", minimum=1)

  def meta_step(state, key):
    key = jax.random.fold_in(key, state.step)
    k_tasks, k_roll = jax.random.split(key)
    tasks = sample_tasks(env, k_tasks, tasks_per_step)
    grads, metrics = jax.vmap(learner.task_grad, in_axes=(None, 0, 0, None))(
        state.params, tasks, jax.random.split(k_roll, tasks_per_step), state.step)
    grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = jax.tree.map(jnp.mean, metrics)
    return MetaTrainState(state.step + 1, params, opt_state), metrics

  return jax.jit(meta_step, donate_argnums=0)


def _kl(policy: Policy, old_dist, new_dist) -> Array:
  """``KL(old || new)`` of one state's action distributions (categorical or diagonal Gaussian)."""
  if policy.discrete:
    old_logp, new_logp = jax.nn.log_softmax(old_dist), jax.nn.log_softmax(new_dist)
    return jnp.sum(jnp.exp(old_logp) * (old_logp - new_logp))
  (old_mean, old_log_std), (new_mean, new_log_std) = old_dist, new_dist
  return jnp.sum(new_log_std - old_log_std + (jnp.exp(2.0 * old_log_std) + jnp.square(
      old_mean - new_mean)) / (2.0 * jnp.exp(2.0 * new_log_std)) - 0.5)


def _adapt(policy: Policy, params: PyTree, batches: list[Episodes],
           step_sizes: tuple[float, ...], *, gamma: float, baseline: str, normalize: bool,
           first_order: bool) -> tuple[PyTree, Array]:
  """The inner loop on given batches, differentiable: ``(theta_K, inner log-probability)``.

  ``theta_{k+1} = theta_k + step_sizes[k] * grad surrogate(theta_k; batches[k])`` (see
  :func:`reinforce_surrogate`; ``first_order`` stops gradients through the inner gradients).
  The log-probability is of each batch under ``theta_k``, the params it was sampled from (the
  DiCE score term of the inner sampling).
  """
  log_prob = jnp.zeros(())
  for batch, size in zip(batches, step_sizes, strict=True):
    log_prob = log_prob + jnp.sum(_episode_log_probs(policy, params, batch))
    grads = jax.grad(lambda p, b=batch: reinforce_surrogate(
        policy, p, b, gamma=gamma, baseline=baseline, normalize=normalize))(params)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    params = jax.tree.map(lambda p, g, size=size: p + size * g, params, grads)
  return params, log_prob


def _trpo_task_terms(policy: Policy, phi: PyTree, batches: list[Episodes], outer: Episodes,
                     old_log_probs: Array, old_dists, inner_log_prob: Array, adv: Array,
                     score_weight: Array, *, adapt_options: dict, score_term: bool
                     ) -> tuple[Array, Array]:
  """One task's TRPO surrogate and mean KL at ``phi`` (see :func:`make_trpo_meta_rl_step`).

  ``adv`` is ``gamma^t (R_t - b_t)`` of the outer episodes (masked); ``old_*`` are the outer
  episodes' log-probabilities and action distributions under the params that sampled them;
  ``score_weight`` multiplies the inner episodes' log-probability (the outer return less a
  baseline that does not depend on this task's samples).
  """
  adapted, log_p = _adapt(policy, phi, batches, **adapt_options)
  log_probs = _episode_log_probs(policy, adapted, outer)
  surrogate = jnp.mean(jnp.sum(jnp.exp(log_probs - old_log_probs) * adv, axis=-1))
  if score_term:
    surrogate = surrogate + (log_p - inner_log_prob) * score_weight
  dists = jax.vmap(jax.vmap(lambda o: policy.apply(adapted, o)))(outer.obs)
  kl = jax.vmap(jax.vmap(lambda a, b: _kl(policy, a, b)))(old_dists, dists)
  return surrogate, jnp.sum(kl * outer.mask) / jnp.maximum(jnp.sum(outer.mask), 1.0)


def _conjugate_gradient(matvec: Callable[[Array], Array], b: Array, iters: int) -> Array:
  """``iters`` conjugate-gradient iterations for ``A x = b`` from ``x = 0`` (A symmetric PSD)."""
  def body(_, carry):
    x, r, p, rr = carry
    ap = matvec(p)
    alpha = rr / jnp.maximum(jnp.vdot(p, ap), 1e-30)
    x, r = x + alpha * p, r - alpha * ap
    rr_new = jnp.vdot(r, r)
    return x, r, r + (rr_new / jnp.maximum(rr, 1e-30)) * p, rr_new

  x, *_ = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(b), b, b, jnp.vdot(b, b)))
  return x


def make_trpo_meta_rl_step(env: Environment, policy: Policy, *, tasks_per_step: int,
                           inner_lr: float = 0.1, steps: int = 1, episodes: int = 20,
                           gamma: float = 0.99, baseline: str = "linear",
                           first_order: bool = False, score_term: bool = True,
                           normalize_advantages: bool = True, max_kl: float = 0.01,
                           cg_iters: int = 10, cg_damping: float = 1e-5,
                           backtrack_ratio: float = 0.8, max_backtracks: int = 15
                           ) -> Callable[[MetaTrainState, PRNGKey], tuple[MetaTrainState, Metrics]]:
  """One compiled TRPO outer step of MAML-RL (the paper's outer optimizer).

  Per step: sample ``tasks_per_step`` tasks; for each, the inner batches from ``theta``, the
  adapted ``theta'`` and the outer episodes from ``theta'`` (as :func:`maml_rl`). With these
  samples fixed, ``theta'(phi)`` is the adaptation of ``phi`` on the same inner batches and

  - the surrogate ``L(phi)`` is the mean over tasks of
    ``mean_m sum_t rho_t(phi) gamma^t (R_t - b_t)``, ``rho_t`` the ratio of the action's
    probability under ``theta'(phi)`` and under ``theta'``, plus (``score_term``, second order)
    ``(log p(inner; phi) - log p(inner; theta)) * (R_outer - b)``, ``b`` the mean outer return
    of the *other* tasks of the step (0 with one task). Its gradient at ``theta`` is the
    meta-gradient of :func:`post_adaptation_objective` with that baseline in the score term:
    unbiased, as ``b`` does not depend on the task's own samples;
  - ``KL(phi)`` is the mean over tasks and outer states of ``KL(pi_theta' || pi_theta'(phi))``.

  The step direction solves ``F x = grad L`` by ``cg_iters`` conjugate-gradient iterations, ``F``
  the Hessian of ``KL`` at ``theta`` (through the adaptation: third-order derivatives for
  second-order MAML) plus ``cg_damping``; it is scaled to ``KL ~= max_kl`` in the quadratic
  model and shrunk by ``backtrack_ratio`` until the exact ``KL <= max_kl`` and ``L`` improves
  (at most ``max_backtracks`` tries; if none passes, ``theta`` is kept and ``accepted`` is 0).

  Args:
    env: the environment (its ``sample_task`` draws the tasks).
    policy: the policy (e.g. :func:`mlp_policy`).
    tasks_per_step: tasks per outer step (20 for 2D navigation in the paper).
    inner_lr: inner step size, as :func:`maml_rl`.
    steps: inner policy-gradient steps (>= 1: the trust region is on the adapted policy).
    episodes: episodes per inner batch and per outer batch.
    gamma: discount.
    baseline: ``"linear"`` or ``"none"``.
    first_order: first-order MAML-RL (no second-order terms, no score term).
    score_term: the inner-sampling score term (with the leave-one-task-out baseline).
    normalize_advantages: as :func:`maml_rl`.
    max_kl: the trust region (0.01 in the paper's code and rllab).
    cg_iters: conjugate-gradient iterations (10).
    cg_damping: added to ``F``'s diagonal (1e-5).
    backtrack_ratio: line-search shrink factor (0.8).
    max_backtracks: line-search tries (15).

  Returns:
    ``meta_step(state, key) -> (state, metrics)`` over a :class:`metajax.MetaTrainState`
    whose meta-parameters are ``{"policy": params}`` (as ``maml_rl(...).init()``) and whose
    ``opt_state`` is unused (``optax.identity()``'s); jitted, state donated, the key folded
    with the step. Metrics: ``pre_return``, ``post_return``, ``loss`` (``-post_return``),
    ``kl`` (of the taken step), ``improvement`` (of ``L``), ``accepted`` (1 or 0) and
    ``backtracks``.

  Raises:
    ValueError: a step count, size or ratio out of range.

  Example:
    >>> import jax, optax, metajax, metajax.envs as envs
    >>> env = envs.point_navigation(horizon=5)
    >>> policy = mlp_policy(env, hidden=(8,))
    >>> state = metajax.init_meta_state(maml_rl(env, policy, episodes=4), optax.identity())
    >>> step = make_trpo_meta_rl_step(env, policy, tasks_per_step=2, episodes=4)
    >>> state, metrics = step(state, jax.random.key(0))
    >>> bool(metrics["kl"] <= 0.01)
    True

  References:
    Schulman et al., "Trust Region Policy Optimization", ICML 2015 (the step, its conjugate
    gradient and line search); Finn, Abbeel & Levine, ICML 2017, Section 5.3 (TRPO as MAML-RL's
    outer optimizer, with the Hessian-vector products through the inner update).
  """
  if baseline not in ("linear", "none"):
    raise ValueError(f"baseline must be 'linear' or 'none', got {baseline!r}.")
  tasks_per_step = check_steps(tasks_per_step, "tasks_per_step", minimum=1)
  steps = check_steps(steps, "steps", minimum=1)
  episodes = check_steps(episodes, "episodes", minimum=1)
  cg_iters = check_steps(cg_iters, "cg_iters", minimum=1)
  max_backtracks = check_steps(max_backtracks, "max_backtracks", minimum=1)
  inner_lr = check_positive(inner_lr, "inner_lr")
  max_kl = check_positive(max_kl, "max_kl")
  if not (isinstance(cg_damping, int | float) and 0 <= cg_damping < math.inf):
    raise ValueError(f"cg_damping must be a finite number >= 0, got {cg_damping!r}; e.g. 1e-5.")
  if not (isinstance(backtrack_ratio, int | float) and 0 < backtrack_ratio < 1):
    raise ValueError(f"backtrack_ratio must lie in (0, 1), got {backtrack_ratio!r}; e.g. 0.8.")
  adapt_options = dict(step_sizes=(inner_lr,) * steps, gamma=gamma, baseline=baseline,
                       normalize=normalize_advantages, first_order=first_order)
  one_step = {**adapt_options, "step_sizes": (inner_lr,)}
  with_score = score_term and not first_order

  def sample(params, task, key):
    """Inner batches from ``params``, the outer episodes from the adapted params, and the inner
    batches' log-probability under the params that sampled them (a constant of the step)."""
    k_inner, k_outer = jax.random.split(key)
    batches, adapted, inner_log_prob = [], params, jnp.zeros(())
    for k in range(steps):
      batch = sample_episodes(env, policy, adapted, task, jax.random.fold_in(k_inner, k),
                              episodes)
      batches.append(batch)
      adapted, log_prob = jax.lax.stop_gradient(_adapt(policy, adapted, [batch], **one_step))
      inner_log_prob = inner_log_prob + log_prob
    outer = sample_episodes(env, policy, adapted, task, k_outer, episodes)
    return batches, adapted, outer, inner_log_prob

  def advantages(outer):
    discount = _discounts(outer.rewards.shape[-1], gamma)
    adv = returns_to_go(outer.rewards, gamma)
    if baseline == "linear":
      adv = adv - linear_feature_baseline(outer, gamma)
    return discount * adv * outer.mask

  def meta_step(state, key):
    key = jax.random.fold_in(key, state.step)
    k_tasks, k_roll = jax.random.split(key)
    tasks = sample_tasks(env, k_tasks, tasks_per_step)
    theta = state.params["policy"]
    batches, adapted, outer, inner_log_prob = jax.vmap(sample, in_axes=(None, 0, 0))(
        theta, tasks, jax.random.split(k_roll, tasks_per_step))
    old_log_probs = jax.vmap(lambda p, o: _episode_log_probs(policy, p, o))(adapted, outer)
    old_dists = jax.vmap(lambda p, o: jax.vmap(jax.vmap(lambda x: policy.apply(p, x)))(o.obs))(
        adapted, outer)
    adv = jax.vmap(advantages)(outer)
    returns = jax.vmap(lambda o: _mean_return(o, gamma))(outer)
    # Leave-one-out baseline: task i's score term is weighted by its outer return less the
    # mean of the other tasks' (independent of task i's samples, so still unbiased).
    others = (jnp.sum(returns) - returns) / max(tasks_per_step - 1, 1)
    constants = (batches, outer, old_log_probs, old_dists, inner_log_prob, adv,
                 returns - others)
    terms = functools.partial(_trpo_task_terms, policy, adapt_options=adapt_options,
                              score_term=with_score)

    def surrogate_and_kl(phi):
      s, k = jax.vmap(terms, in_axes=(None, 0, 0, 0, 0, 0, 0, 0))(phi, *constants)
      return jnp.mean(s), jnp.mean(k)

    flat_theta, unravel = ravel_pytree(theta)
    surrogate = lambda flat: surrogate_and_kl(unravel(flat))[0]
    kl = lambda flat: surrogate_and_kl(unravel(flat))[1]
    surrogate_0 = surrogate(flat_theta)
    grad = jax.grad(surrogate)(flat_theta)
    kl_grad = jax.grad(kl)
    fisher = lambda v: jax.jvp(kl_grad, (flat_theta,), (v,))[1] + cg_damping * v
    direction = _conjugate_gradient(fisher, grad, cg_iters)
    full_step = direction * jnp.sqrt(2.0 * max_kl / jnp.maximum(
        jnp.vdot(direction, fisher(direction)), 1e-30))

    def try_step(carry):
      k, *_ = carry
      candidate = flat_theta + backtrack_ratio ** k.astype(flat_theta.dtype) * full_step
      s, d = surrogate_and_kl(unravel(candidate))
      ok = jnp.isfinite(s) & jnp.isfinite(d) & (d <= max_kl) & (s > surrogate_0)
      return k + 1, ok, candidate, s - surrogate_0, d

    def searching(carry):
      k, ok, *_ = carry
      return (~ok) & (k < max_backtracks)

    zero = jnp.zeros((), flat_theta.dtype)
    tries, accepted, candidate, improvement, step_kl = jax.lax.while_loop(
        searching, try_step, (jnp.zeros((), jnp.int32), jnp.array(False), flat_theta, zero,
                              zero))
    new_flat = jnp.where(accepted, candidate, flat_theta)
    params = {**state.params, "policy": unravel(new_flat)}
    pre = jnp.mean(jax.vmap(lambda bs: _mean_return(bs[0], gamma))(batches))
    post = jnp.mean(returns)
    metrics = {"pre_return": pre, "post_return": post, "loss": -post,
               "kl": jnp.where(accepted, step_kl, zero),
               "improvement": jnp.where(accepted, improvement, zero),
               "accepted": accepted.astype(jnp.float32),
               "backtracks": (tries - 1).astype(jnp.float32)}
    return MetaTrainState(state.step + 1, params, state.opt_state), metrics

  return jax.jit(meta_step, donate_argnums=0)
