"""Meta-RL: environments, PPO pieces, MAML-RL's meta-gradient by enumeration, RL², baselines."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import metajax.envs as envs
from metajax.algorithms.ppo import gae_advantages, ppo_loss
from metajax.algorithms.rl2 import gru_cell, rl2
from metajax.envs import bandit_baselines as bb
from metajax.train.rl import RLConfig, make_env, rl_test_tasks

# The module (metajax.algorithms.maml_rl is also the name of its factory function).
mrl = importlib.import_module("metajax.algorithms.maml_rl")

# --- MAML-RL meta-gradient against exact enumeration ------------------------------------------

MEANS = np.array([0.3, 0.8])
ALPHA = 0.7
EPISODES = 2  # per batch: (2 actions x 2 rewards)^2 = 16 batches, enumerated exactly
TABULAR = mrl.Policy(init=lambda key: jnp.array([0.2, -0.1]), apply=lambda p, obs: p,
                     discrete=True)


def _batches():
  """Every batch of EPISODES one-pull episodes, as stacked Episodes plus (actions, rewards)."""
  combos = list(itertools.product(itertools.product(range(2), range(2)), repeat=EPISODES))
  actions = np.array([[a for a, _ in c] for c in combos])
  rewards = np.array([[r for _, r in c] for c in combos], np.float32)
  n = len(combos)
  episodes = mrl.Episodes(obs=jnp.ones((n, EPISODES, 1, 1)),
                          actions=jnp.asarray(actions)[..., None],
                          rewards=jnp.asarray(rewards)[..., None],
                          mask=jnp.ones((n, EPISODES, 1)))
  return episodes, actions, rewards


def _batch_prob(theta, actions, rewards):
  """Probability of one batch under the softmax policy ``theta`` and the arm means."""
  pi = jax.nn.softmax(theta)
  mu = jnp.asarray(MEANS)[actions]
  return jnp.prod(pi[actions] * jnp.where(rewards > 0, mu, 1.0 - mu))


def _adapted(theta, actions, rewards):
  """Independent REINFORCE step: theta + alpha * mean_m r_m (onehot(a_m) - softmax(theta))."""
  score = jax.nn.one_hot(actions, 2) - jax.nn.softmax(theta)
  return theta + ALPHA * jnp.mean(rewards[:, None] * score, axis=0)


def _exact_meta_objective(theta):
  """E_{inner batch ~ pi_theta}[ expected one-pull reward of pi_{theta'} ], by enumeration."""
  _, actions, rewards = _batches()
  total = 0.0
  for a, r in zip(actions, rewards):
    theta_prime = _adapted(theta, a, r)
    total = total + _batch_prob(theta, a, r) * jnp.sum(jax.nn.softmax(theta_prime) * MEANS)
  return total


def _expected_estimator(theta, *, score_term=True, first_order=False):
  """E over inner and outer batches of grad of the library's meta-objective, exactly."""
  episodes, actions, rewards = _batches()
  take = lambda i: jax.tree.map(lambda x: x[i], episodes)

  def grad_for(i, j):
    def objective(t):
      value, _ = mrl.post_adaptation_objective(
          TABULAR, t, [take(i)], take(j), inner_lr=ALPHA, gamma=1.0, baseline="none",
          score_term=score_term, first_order=first_order, normalize_advantages=False)
      return value
    return jax.grad(objective)(theta)

  n = len(actions)
  ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  grads = jax.vmap(grad_for)(ii.ravel(), jj.ravel()).reshape(n, n, -1)
  p_inner = jax.vmap(lambda a, r: _batch_prob(theta, a, r))(actions, rewards)
  adapted = jax.vmap(lambda a, r: _adapted(theta, a, r))(actions, rewards)
  p_outer = jax.vmap(lambda t: jax.vmap(lambda a, r: _batch_prob(t, a, r))(actions, rewards)
                     )(adapted)
  return jnp.einsum("i,ij,ijk->k", p_inner, p_outer, grads)


def test_maml_rl_adapted_params_match_reinforce_step():
  episodes, actions, rewards = _batches()
  theta = TABULAR.init(None)
  for i in (0, 5, 15):
    one = jax.tree.map(lambda x, i=i: x[i], episodes)
    _, adapted = mrl.post_adaptation_objective(TABULAR, theta, [one], one, inner_lr=ALPHA,
                                               gamma=1.0, baseline="none",
                                               normalize_advantages=False)
    np.testing.assert_allclose(adapted, _adapted(theta, actions[i], rewards[i]), atol=1e-6)


def test_maml_rl_meta_gradient_is_exact_in_expectation():
  """The estimator's expectation (all 16 x 16 batch pairs, weighted) equals d/dtheta of the
  exact expected post-adaptation return; dropping the inner score term (original MAML-RL)
  or the second-order terms (first order) does not."""
  theta = TABULAR.init(None)
  exact = jax.jit(jax.grad(_exact_meta_objective))(theta)
  estimate = jax.jit(_expected_estimator, static_argnames=("score_term", "first_order"))
  np.testing.assert_allclose(estimate(theta), exact, atol=1e-5)
  biased = estimate(theta, score_term=False)
  first_order = estimate(theta, first_order=True)
  assert float(jnp.max(jnp.abs(biased - exact))) > 1e-3
  assert float(jnp.max(jnp.abs(first_order - exact))) > 1e-3


def test_dice_objective_value_and_gradient():
  """Value = mean return; gradient = REINFORCE with returns-to-go (hand computation)."""
  theta = jnp.array([0.5, -0.2, 0.1])
  policy = mrl.Policy(init=None, apply=lambda p, obs: p, discrete=True)
  episodes = mrl.Episodes(obs=jnp.ones((2, 2, 1)), actions=jnp.array([[0, 2], [1, 1]]),
                          rewards=jnp.array([[1.0, 2.0], [0.0, 3.0]]), mask=jnp.ones((2, 2)))
  gamma = 0.9
  value, grad = jax.value_and_grad(
      lambda t: mrl.dice_objective(policy, t, episodes, gamma=gamma, baseline="none"))(theta)
  np.testing.assert_allclose(value, ((1 + 0.9 * 2) + (0 + 0.9 * 3)) / 2, rtol=1e-6)
  score = lambda a: np.eye(3)[a] - np.asarray(jax.nn.softmax(theta))
  expected = ((1 + 0.9 * 2) * score(0) + 0.9 * 2 * score(2)
              + 0.9 * 3 * score(1) + 0.9 * 3 * score(1)) / 2
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_maml_rl_meta_step_runs_on_point_navigation():
  import optax

  import metajax
  env = envs.point_navigation(horizon=3)
  learner = mrl.maml_rl(env, mrl.mlp_policy(env, hidden=(8,)), episodes=3, inner_lr=0.1)
  learner.check_task(envs.sample_tasks(env, jax.random.key(0), 3))
  state = metajax.init_meta_state(learner, optax.adam(1e-2))
  step = mrl.make_meta_rl_step(learner, env, optax.adam(1e-2), tasks_per_step=2)
  state, metrics = step(state, jax.random.key(0))
  state, metrics = step(state, jax.random.key(0))
  assert step._cache_size() == 1
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 2


def test_linear_feature_baseline_fits_returns_even_for_collinear_features():
  """The fit equals a float64 ridge fit on random episodes; for a policy that runs
  straight ahead (o proportional to t, o_1^2 = o_2^2) it stays finite and close, where the
  float32 normal equations were singular and gave NaN (2D navigation test, 2026-11-30)."""
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(6, 12, 2)).astype(np.float32)
  rewards = rng.normal(size=(6, 12)).astype(np.float32)
  episodes = mrl.Episodes(jnp.asarray(obs), jnp.zeros((6, 12, 2)), jnp.asarray(rewards),
                          jnp.ones((6, 12)))
  t = np.broadcast_to(np.arange(12.0)[None, :, None] / 100.0, (6, 12, 1))
  features = np.concatenate([obs, obs ** 2, t, t ** 2, t ** 3, np.ones_like(t)], -1).reshape(-1, 8)
  targets = np.asarray(mrl.returns_to_go(jnp.asarray(rewards), 0.9)).reshape(-1)
  f64 = features.astype(np.float64)
  norms = np.linalg.norm(f64, axis=0)  # ridge 1e-5 on unit-norm columns, in float64
  coef = np.linalg.solve((f64 / norms).T @ (f64 / norms) + 1e-5 * np.eye(8),
                         (f64 / norms).T @ targets) / norms
  np.testing.assert_allclose(np.asarray(mrl.linear_feature_baseline(episodes, 0.9)).reshape(-1),
                             f64 @ coef, atol=2e-4)
  steps = jnp.arange(100.0)
  straight = jnp.broadcast_to(jnp.stack([0.099 * steps, -0.099 * steps], -1), (20, 100, 2))
  rewards = -jnp.sqrt(jnp.sum(jnp.square(straight - jnp.array([0.3, 0.2])), -1))
  episodes = mrl.Episodes(straight, jnp.zeros((20, 100, 2)), rewards, jnp.ones((20, 100)))
  fitted = jax.jit(lambda e: mrl.linear_feature_baseline(e, 0.99))(episodes)
  target = mrl.returns_to_go(rewards, 0.99)
  assert bool(jnp.all(jnp.isfinite(fitted)))
  assert float(jnp.max(jnp.abs(fitted - target))) < 0.01 * float(jnp.max(jnp.abs(target)))


# --- MAML-RL with a TRPO outer step ---------------------------------------------------------


def _trpo_terms_at(theta, i, j, *, first_order=False):
  """TRPO's surrogate and KL for inner batch i and outer batch j of the enumerated bandit."""
  episodes, _, _ = _batches()
  take = lambda k: jax.tree.map(lambda x: x[k], episodes)
  inner, outer = take(i), take(j)
  options = dict(step_sizes=(ALPHA,), gamma=1.0, baseline="none", normalize=False,
                 first_order=first_order)
  adapted, inner_log_prob = mrl._adapt(TABULAR, theta, [inner], **options)
  old_log_probs = mrl._episode_log_probs(TABULAR, adapted, outer)
  old_dists = jax.vmap(jax.vmap(lambda o: TABULAR.apply(adapted, o)))(outer.obs)
  weight = mrl._mean_return(outer, 1.0)  # one task per step: no baseline
  return lambda phi: mrl._trpo_task_terms(
      TABULAR, phi, [inner], outer, old_log_probs, old_dists, inner_log_prob,
      outer.rewards * outer.mask, weight, adapt_options=options, score_term=not first_order)


@pytest.mark.parametrize("first_order", [False, True])
def test_trpo_surrogate_gradient_is_the_unbiased_meta_gradient(first_order):
  """At theta, the gradient of TRPO's importance-weighted surrogate equals the gradient of
  post_adaptation_objective (whose expectation is exact, above) on the same samples, and the
  KL is 0; away from theta the surrogate's value changes (it is not a constant)."""
  theta = TABULAR.init(None)
  episodes, _, _ = _batches()
  take = lambda k: jax.tree.map(lambda x: x[k], episodes)
  for i, j in ((0, 0), (3, 9), (12, 5), (15, 15)):
    terms = _trpo_terms_at(theta, i, j, first_order=first_order)
    reference = jax.grad(lambda t, i=i, j=j: mrl.post_adaptation_objective(
        TABULAR, t, [take(i)], take(j), inner_lr=ALPHA, gamma=1.0, baseline="none",
        first_order=first_order, normalize_advantages=False)[0])(theta)
    surrogate = lambda p, terms=terms: terms(p)[0]
    np.testing.assert_allclose(jax.grad(surrogate)(theta), reference, atol=1e-6)
    assert abs(float(terms(theta)[1])) < 1e-7
  moved = terms(theta + jnp.array([0.3, -0.3]))
  assert abs(float(moved[0] - terms(theta)[0])) > 1e-3 and float(moved[1]) > 1e-4


def test_trpo_kl_curvature_through_the_inner_step_matches_the_kl_itself():
  """The Hessian TRPO preconditions with (third-order: KL through the inner update) gives the
  exact KL's second-order behaviour: KL(theta + eps v) ~= eps^2 / 2 v^T H v, and the
  categorical and Gaussian KLs equal their definitions (sum, and numerical integration)."""
  theta = TABULAR.init(None)
  terms = _trpo_terms_at(theta, 6, 2)
  kl = lambda p: terms(p)[1]
  hessian = jax.hessian(kl)(theta)
  for v in (jnp.array([1.0, 0.0]), jnp.array([0.6, -0.8])):
    eps = 1e-2
    np.testing.assert_allclose(float(kl(theta + eps * v)), 0.5 * eps ** 2 * float(v @ hessian @ v),
                               rtol=2e-2)
  p, q = jnp.array([0.2, 1.0, -0.5]), jnp.array([0.0, 0.3, 0.4])
  pp, qq = np.asarray(jax.nn.softmax(p)), np.asarray(jax.nn.softmax(q))
  np.testing.assert_allclose(float(mrl._kl(TABULAR, p, q)), np.sum(pp * np.log(pp / qq)),
                             rtol=1e-5)
  gaussian = mrl.Policy(init=None, apply=None, discrete=False)
  old, new = (jnp.array([0.1]), jnp.array([-0.3])), (jnp.array([0.5]), jnp.array([0.2]))
  x = np.linspace(-8, 8, 200001)
  density = lambda m, s: np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
  f, g = density(0.1, np.exp(-0.3)), density(0.5, np.exp(0.2))
  integral = np.sum(f * np.log(f / g)) * (x[1] - x[0])
  np.testing.assert_allclose(float(mrl._kl(gaussian, old, new)), integral, rtol=1e-4)


def test_conjugate_gradient_solves_a_symmetric_positive_definite_system():
  a = np.random.default_rng(0).normal(size=(6, 6))
  matrix = jnp.asarray(a @ a.T + 0.5 * np.eye(6), jnp.float32)
  b = jnp.arange(1.0, 7.0)
  x = mrl._conjugate_gradient(lambda v: matrix @ v, b, 6)  # exact in n steps
  np.testing.assert_allclose(matrix @ x, b, rtol=1e-3, atol=1e-3)
  residual = lambda k: float(jnp.linalg.norm(matrix @ mrl._conjugate_gradient(
      lambda v: matrix @ v, b, k) - b))
  assert residual(2) > residual(6)


def test_trpo_meta_step_stays_in_the_trust_region_and_improves_the_surrogate():
  import optax

  import metajax
  env = envs.point_navigation(horizon=4)
  policy = mrl.mlp_policy(env, hidden=(8,))
  learner = mrl.maml_rl(env, policy, episodes=4, inner_lr=0.1)
  state = metajax.init_meta_state(learner, optax.identity())
  step = mrl.make_trpo_meta_rl_step(env, policy, tasks_per_step=3, episodes=4, max_kl=0.01)
  accepted = 0
  for _ in range(3):
    before = state.params["policy"]["log_std"].copy()
    state, metrics = step(state, jax.random.key(0))
    if float(metrics["accepted"]):
      accepted += 1
      assert 0 < float(metrics["kl"]) <= 0.01 and float(metrics["improvement"]) > 0
    else:
      np.testing.assert_array_equal(state.params["policy"]["log_std"], before)
  assert accepted >= 2 and step._cache_size() == 1 and int(state.step) == 3
  for bad, match in ((dict(max_kl=0.0), "max_kl"), (dict(backtrack_ratio=1.0), "backtrack"),
                     (dict(steps=0), "steps"), (dict(cg_damping=-1.0), "cg_damping")):
    with pytest.raises(ValueError, match=match):
      mrl.make_trpo_meta_rl_step(env, policy, tasks_per_step=3, **bad)


# --- PPO pieces against hand computation ------------------------------------------------------


def test_gae_matches_hand_computation():
  rewards = np.array([1.0, 0.5, -1.0, 2.0])
  values = np.array([0.3, -0.2, 0.8, 0.1])
  dones = np.array([0.0, 1.0, 0.0, 0.0])
  last, gamma, lam = 0.7, 0.9, 0.8
  adv, ret = gae_advantages(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(dones),
                            jnp.asarray(last), gamma=gamma, gae_lambda=lam)
  # Hand: backwards recursion.
  next_v = np.append(values[1:], last)
  delta = rewards + gamma * (1 - dones) * next_v - values
  expected = np.zeros(4)
  running = 0.0
  for t in reversed(range(4)):
    running = delta[t] + gamma * lam * (1 - dones[t]) * running
    expected[t] = running
  np.testing.assert_allclose(adv, expected, rtol=1e-5)
  np.testing.assert_allclose(ret, expected + values, rtol=1e-5)
  # Spot check one entry written out: A_1 = delta_1 since the episode ends at t=1.
  np.testing.assert_allclose(adv[1], 0.5 - (-0.2), rtol=1e-6)


def test_ppo_clipped_loss_matches_hand_computation():
  logp = jnp.log(jnp.array([0.5, 0.3, 0.9]))
  old = jnp.log(jnp.array([0.25, 0.3, 0.6]))  # ratios 2.0, 1.0, 1.5
  adv = jnp.array([1.0, -2.0, -1.0])
  values, returns = jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 1.0, 0.0])
  entropy = jnp.array([0.5, 0.7, 0.9])
  out = ppo_loss(logp, old, adv, values, returns, entropy, clip_eps=0.2, value_coef=0.5,
                 entropy_coef=0.01)
  # min(r A, clip(r) A): 2.0*1 vs 1.2*1 -> 1.2; 1*-2 -> -2; 1.5*-1=-1.5 vs 1.2*-1=-1.2 -> -1.5.
  policy = -(1.2 - 2.0 - 1.5) / 3
  value = 0.5 * (1 + 0 + 4) / 3
  np.testing.assert_allclose(out.policy, policy, rtol=1e-6)
  np.testing.assert_allclose(out.value, value, rtol=1e-6)
  np.testing.assert_allclose(out.total, policy + 0.5 * value - 0.01 * 0.7, rtol=1e-6)
  np.testing.assert_allclose(out.clip_fraction, 2 / 3, rtol=1e-6)
  # Where the clipped term is the minimum (sample 0) there is no gradient; elsewhere it is
  # -rho A / 3 (sample 2 keeps its unclipped, pessimistic term).
  grad = jax.grad(lambda lp: ppo_loss(lp, old, adv, values, returns, entropy).policy)(logp)
  np.testing.assert_allclose(grad, [0.0, 2.0 / 3, 1.5 / 3], atol=1e-6)


# --- Environments and their checks ------------------------------------------------------------


@pytest.mark.parametrize("env", [envs.bernoulli_bandit(arms=5, pulls=10),
                                 envs.point_navigation()], ids=lambda e: e.name)
def test_builtin_envs_pass_check_env(env):
  envs.check_env(env)


def test_tabular_mdp_task_distribution():
  env = envs.tabular_mdp()
  tasks = jax.jit(lambda key: envs.sample_tasks(env, key, 200))(jax.random.key(0))
  envs.check_env(env, jax.tree.map(lambda a: a[0], tasks))  # (eager sampling is slow)
  np.testing.assert_allclose(tasks.transitions.sum(-1), 1.0, atol=1e-5)
  # Flat Dirichlet over 10 states: each probability has mean 1/10; mean rewards ~ N(1, 1).
  assert abs(float(tasks.transitions.mean()) - 0.1) < 1e-3
  assert abs(float(tasks.mean_rewards.mean()) - 1.0) < 0.05
  assert abs(float(tasks.mean_rewards.std()) - 1.0) < 0.05


def test_point_navigation_reward_and_clip():
  env = envs.point_navigation()
  task = envs.PointGoalTask(jnp.array([0.3, -0.4]))
  obs, state = env.reset(jax.random.key(0), task)
  obs, state, reward, done, _ = env.step(jax.random.key(1), state, jnp.array([1.0, 0.05]), task)
  np.testing.assert_allclose(obs, [0.1, 0.05], rtol=1e-6)  # clipped to 0.1
  np.testing.assert_allclose(reward, -np.hypot(0.2, 0.45), rtol=1e-6)
  assert not bool(done)


def _broken(env, **changes):
  return env._replace(**changes)


def test_bad_envs_raise_naming_the_value():
  env = envs.bernoulli_bandit(arms=3, pulls=5)
  with pytest.raises(ValueError, match=r"action 5 is out of range for Discrete\(3\)"):
    envs.check_action(env.action_space, 5)
  with pytest.raises(ValueError, match=r"shape \(2,\), but observation_space.shape is \(1,\)"):
    envs.check_env(_broken(env, reset=lambda key, task: (jnp.zeros(2), jnp.zeros((), jnp.int32))))

  def nan_step(key, state, action, task):
    obs, state, reward, done, info = env.step(key, state, action, task)
    return obs, state, reward * jnp.nan, done, info

  with pytest.raises(ValueError, match="non-finite reward nan"):
    envs.check_env(_broken(env, step=nan_step))
  with pytest.raises(ValueError, match=r"Box action must have shape \(2,\)"):
    envs.check_action(envs.point_navigation().action_space, jnp.zeros(3))
  learner = rl2(env, episodes=5, hidden=4, tasks_per_step=2, minibatches=1)
  bad = _broken(env, step=nan_step)
  with pytest.raises(ValueError, match="non-finite reward"):
    rl2(bad, episodes=5, hidden=4, tasks_per_step=2, minibatches=1).check_task(None)
  learner.check_task(env.sample_task(jax.random.key(0)))
  with pytest.raises(ValueError, match="not divisible by minibatches=3"):
    rl2(env, episodes=5, tasks_per_step=4, minibatches=3)
  with pytest.raises(ValueError, match="Discrete action space"):
    rl2(envs.point_navigation(), episodes=1)


def test_gymnax_adapter():
  pytest.importorskip("gymnax")
  for env_id in ("BernoulliBandit-misc", "MetaMaze-misc"):
    env = envs.from_gymnax(env_id)
    envs.check_env(env)
    task = env.sample_task(jax.random.key(0))
    # The task is fixed by the task's reset key: any episode of a trial replays it.
    _, s1 = env.reset(jax.random.key(1), task)
    _, s2 = env.reset(jax.random.key(2), task)
    jax.tree.map(np.testing.assert_array_equal, s1, s2)
  env = envs.from_gymnax("BernoulliBandit-misc", episode_length=10)
  learner = rl2(env, episodes=2, hidden=8, tasks_per_step=4, minibatches=2, epochs=1)
  params = learner.init(jax.random.key(0)).params
  trial = jax.jit(learner.rollout)(params, env.sample_task(jax.random.key(3)), jax.random.key(4))
  assert learner.trial_length == 20 and trial.rewards.shape == (20,)
  assert set(np.unique(np.asarray(trial.rewards))) <= {0.0, 1.0}
  # The done flag fed to the GRU (last input) marks the episode boundary after step 10.
  np.testing.assert_array_equal(np.asarray(trial.inputs[:, -1]), np.eye(20)[10])


# --- RL² --------------------------------------------------------------------------------------


def test_rl2_compiles_once_and_learns_a_two_armed_bandit():
  env = envs.bernoulli_bandit(arms=2, pulls=10)
  learner = rl2(env, episodes=10, hidden=16, tasks_per_step=64, minibatches=2, epochs=2,
                learning_rate=1e-2, gamma=1.0, gae_lambda=0.3)
  state = learner.init(jax.random.key(0))
  before = learner.evaluate(state.params, jax.random.key(7), 2000)
  for _ in range(400):  # compiling dominates: the 400 steps take about a second
    state, metrics = learner.train_step(state, jax.random.key(1))
  assert learner.train_step._cache_size() == 1
  after = learner.evaluate(state.params, jax.random.key(7), 2000)
  # Random play earns 5.0 per 10 pulls, the Bayes-optimal strategy 6.02 (exact DP); the 95% CI
  # half-width of a 2000-task mean is about 0.1.
  assert float(before.mean()) < 5.25, before.mean()
  assert float(after.mean()) > 5.6, after.mean()


def test_rl2_greedy_evaluation_takes_the_most_probable_action():
  """``evaluate(..., greedy=True)`` plays the argmax action; sampling plays the other arm at
  the policy's probability. Arm 1 always pays 1, arm 0 never; the policy prefers arm 1 by a
  logit margin of 0.5 (probability 0.62) whatever it has seen."""
  env = envs.bernoulli_bandit(arms=2, pulls=10)
  learner = rl2(env, episodes=10, hidden=4, tasks_per_step=2, minibatches=1)
  params = learner.init(jax.random.key(0)).params
  params["policy"] = {"w": jnp.zeros_like(params["policy"]["w"]), "b": jnp.array([0.0, 0.5])}
  tasks = envs.BanditTask(jnp.tile(jnp.array([0.0, 1.0]), (500, 1)))
  greedy = np.asarray(learner.evaluate(params, jax.random.key(3), tasks, greedy=True))
  sampled = np.asarray(learner.evaluate(params, jax.random.key(3), tasks))
  np.testing.assert_array_equal(greedy, 10.0)
  expected = 10 * jax.nn.sigmoid(0.5)  # 6.22 per trial; the 500-trial mean's sd is about 0.07
  assert abs(sampled.mean() - float(expected)) < 0.3, sampled.mean()
  with pytest.raises(TypeError, match="greedy"):
    learner.evaluate(params, jax.random.key(3), tasks, greedy="yes")


def test_rl2_learning_rate_decays_linearly_to_zero():
  """With ``learning_rate_decay_steps=2`` (1 epoch x 2 minibatches) the four Adam updates use
  rates 1e-2, 5e-3, 0, 0: the params move in steps 1 and 2 only, and move less in the second."""
  env = envs.bernoulli_bandit(arms=2, pulls=4)
  learner = rl2(env, episodes=4, hidden=4, tasks_per_step=4, minibatches=2, epochs=1,
                learning_rate=1e-2, learning_rate_decay_steps=2)
  state = learner.init(jax.random.key(0))
  flat = [np.asarray(ravel_pytree(state.params)[0])]
  for _ in range(3):  # the step donates its input state: copy the params out first
    state = learner.train_step(state, jax.random.key(1))[0]
    flat.append(np.asarray(ravel_pytree(state.params)[0]))
  moves = [float(np.abs(b - a).max()) for a, b in zip(flat, flat[1:])]
  assert moves[0] > 0 and 0 < moves[1] < moves[0] and moves[2] == 0.0, moves
  with pytest.raises(ValueError, match="learning_rate_decay_steps must be >= 1"):
    rl2(env, episodes=4, learning_rate_decay_steps=0)
  with pytest.raises(TypeError, match="learning_rate_decay_steps must be a Python int.*1.5"):
    rl2(env, episodes=4, learning_rate_decay_steps=1.5)


def test_rl2_learning_rate_decay_begin_keeps_the_constant_rate_until_then():
  """``learning_rate_decay_begin=2``: the first two training steps equal a constant-rate run's
  bit for bit (what lets a run decay after a constant-rate phase); in step 3 the rate falls
  (2 updates of rates 1e-2, 5e-3) and after step 3 it is zero."""
  env = envs.bernoulli_bandit(arms=2, pulls=4)
  kwargs = dict(episodes=4, hidden=4, tasks_per_step=4, minibatches=2, epochs=1,
                learning_rate=1e-2)
  constant = rl2(env, **kwargs)
  delayed = rl2(env, learning_rate_decay_steps=1, learning_rate_decay_begin=2, **kwargs)
  flat = {}
  for name, learner in (("constant", constant), ("delayed", delayed)):
    state = learner.init(jax.random.key(0))
    flat[name] = [np.asarray(ravel_pytree(state.params)[0])]
    for _ in range(4):  # the step donates its input state: copy the params out first
      state = learner.train_step(state, jax.random.key(1))[0]
      flat[name].append(np.asarray(ravel_pytree(state.params)[0]))
  for step in range(3):
    np.testing.assert_array_equal(flat["delayed"][step], flat["constant"][step])
  moves = {name: [float(np.abs(b - a).max()) for a, b in zip(f, f[1:])]
           for name, f in flat.items()}
  assert 0 < moves["delayed"][2] < moves["constant"][2], moves
  assert moves["delayed"][3] == 0.0 < moves["constant"][3], moves
  with pytest.raises(ValueError, match="learning_rate_decay_begin=5 needs learning_rate_decay_s"):
    rl2(env, episodes=4, learning_rate_decay_begin=5)
  with pytest.raises(ValueError, match="learning_rate_decay_begin must be >= 0"):
    rl2(env, episodes=4, learning_rate_decay_steps=2, learning_rate_decay_begin=-1)


def test_rl2_replay_gru_backward_equals_autodiff_of_the_gru_cell():
  """The replay's hand-written GRU backward pass gives the cotangents ``jax.vjp`` derives
  from :func:`gru_cell` (vmapped over the batch), for every parameter, the state and the
  input, and the same forward output."""
  from metajax.algorithms.rl2 import _gru_cell_batch, gru_cell, gru_init

  batch, inputs, hidden = 3, 5, 4
  params = gru_init(jax.random.key(0), inputs, hidden)
  params["b"] = 0.3 * jax.random.normal(jax.random.key(1), params["b"].shape)
  params["b_hn"] = 0.3 * jax.random.normal(jax.random.key(2), params["b_hn"].shape)
  h = jax.random.normal(jax.random.key(3), (batch, hidden))
  x = jax.random.normal(jax.random.key(4), (batch, inputs))
  g = jax.random.normal(jax.random.key(5), (batch, hidden))
  names = ("w_x", "w_h", "b", "b_hn")

  def reference(w_x, w_h, b, b_hn, h, x):
    cell = dict(zip(names, (w_x, w_h, b, b_hn)))
    return jax.vmap(lambda hi, xi: gru_cell(cell, hi, xi))(h, x)

  args = (*(params[k] for k in names), h, x)
  out, vjp = jax.vjp(_gru_cell_batch, *args)
  out_ref, vjp_ref = jax.vjp(reference, *args)
  np.testing.assert_allclose(np.asarray(out), np.asarray(out_ref), rtol=1e-6, atol=1e-6)
  for got, want in zip(vjp(g), vjp_ref(g), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_rl_test_tasks_are_the_tasks_the_rl2_test_scores():
  """Baselines scored on ``rl_test_tasks(config)`` face the tasks of the trainer's RL² test,
  ``evaluate(params, key(seed + 2), test_tasks)``; MAML-RL's test draws from the unsplit key."""
  config = RLConfig(env_kwargs={"arms": 3, "pulls": 5}, episodes=5, test_tasks=50, seed=4)
  learner = rl2(make_env(config), episodes=5, hidden=4, tasks_per_step=2, minibatches=1)
  params = learner.init(jax.random.key(0)).params
  tasks = rl_test_tasks(config)
  assert tasks.means.shape == (50, 3)
  np.testing.assert_array_equal(
      np.asarray(learner.evaluate(params, jax.random.key(6), 50)),
      np.asarray(learner.evaluate(params, jax.random.key(6), tasks)))
  maml_tasks = rl_test_tasks(config.replace(algorithm="maml_rl"))
  assert not np.allclose(np.asarray(maml_tasks.means), np.asarray(tasks.means))


def test_rl2_time_input_feeds_the_fraction_of_the_trial_elapsed():
  """``time_input=True`` appends t / trial_length to each GRU input (0, 0.25, ... for 4 steps)
  and nothing else changes; a non-bool is refused."""
  env = envs.bernoulli_bandit(arms=2, pulls=4)
  plain = rl2(env, episodes=4, hidden=4, tasks_per_step=2, minibatches=1)
  timed = rl2(env, episodes=4, hidden=4, tasks_per_step=2, minibatches=1, time_input=True)
  task = env.sample_task(jax.random.key(0))
  params = timed.init(jax.random.key(0)).params
  trial = timed.rollout(params, task, jax.random.key(1))
  np.testing.assert_allclose(np.asarray(trial.inputs[:, -1]), [0.0, 0.25, 0.5, 0.75])
  base = plain.rollout(plain.init(jax.random.key(0)).params, task, jax.random.key(1))
  assert trial.inputs.shape[-1] == base.inputs.shape[-1] + 1
  with pytest.raises(TypeError, match="time_input"):
    rl2(env, episodes=4, time_input=1)


def test_rl2_previous_observation_feeds_the_state_each_action_was_taken_in():
  """``previous_observation=True`` appends, at step t, the observation of step t-1 (zeros at
  t=0), also across episode boundaries, where the current observation is the reset state; the
  rest of each input is unchanged and a non-bool is refused."""
  env = envs.tabular_mdp(states=4, actions=2, episode_length=3)
  plain = rl2(env, episodes=3, hidden=4, tasks_per_step=2, minibatches=1)
  paired = rl2(env, episodes=3, hidden=4, tasks_per_step=2, minibatches=1,
               previous_observation=True)
  task = env.sample_task(jax.random.key(0))
  trial = paired.rollout(paired.init(jax.random.key(0)).params, task, jax.random.key(1))
  inputs = np.asarray(trial.inputs)
  current, before = inputs[:, :4], inputs[:, -4:]
  np.testing.assert_array_equal(before[0], np.zeros(4))
  np.testing.assert_array_equal(before[1:], current[:-1])
  # Episodes restart in state 0 at t = 3 and 6, while the state before is where the last
  # action of the episode was taken.
  np.testing.assert_array_equal(current[[0, 3, 6]].argmax(-1), [0, 0, 0])
  base = plain.rollout(plain.init(jax.random.key(0)).params, task, jax.random.key(1))
  assert inputs.shape[-1] == base.inputs.shape[-1] + 4
  with pytest.raises(TypeError, match="previous_observation"):
    rl2(env, episodes=3, previous_observation=1)


def test_expected_reward_policy_gradient_is_unbiased_with_less_variance_by_enumeration():
  """What ``rl2(..., expected_rewards=True)`` relies on, checked exactly on a GRU policy (rl2's
  ``gru_cell``) over 3 pulls of a 2-armed Bernoulli bandit, all 4^3 (action, reward) histories
  enumerated: the score-function gradient with each reward replaced by the pulled arm's mean,
  E[sum_t grad log pi(a_t|h_t) sum_{t'>=t} mu(a_t')], equals the exact gradient of the expected
  total reward, as the estimator with sampled rewards does, and has a smaller variance."""
  from metajax.algorithms.rl2 import gru_cell, gru_init

  means, pulls, hidden = np.array([0.3, 0.8]), 3, 4
  params = {"gru": gru_init(jax.random.key(0), 3, hidden),
            "w": 0.5 * jax.random.normal(jax.random.key(1), (hidden, 2)), "b": jnp.zeros(2)}
  histories = np.array(list(itertools.product(((0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)),
                                              repeat=pulls)))  # [64, pulls, (a, r)]
  actions, rewards = histories[..., 0].astype(np.int32), histories[..., 1]
  reward_prob = np.prod(np.where(rewards == 1.0, means[actions], 1.0 - means[actions]), axis=1)

  def log_probs(params, a, r):  # log pi(a_t | h_t), t = 0 .. pulls-1, of one history
    h, out = jnp.zeros(hidden), []
    for t in range(pulls):
      prev = (jax.nn.one_hot(a[t - 1], 2), r[t - 1:t]) if t else (jnp.zeros(2), jnp.zeros(1))
      h = gru_cell(params["gru"], h, jnp.concatenate(prev))
      out.append(jax.nn.log_softmax(h @ params["w"] + params["b"])[a[t]])
    return jnp.stack(out)

  all_log_probs = jax.vmap(log_probs, in_axes=(None, 0, 0))

  @jax.jit
  def exact_gradient(params):
    def expected_total(params):
      prob = jnp.exp(jnp.sum(all_log_probs(params, actions, rewards), axis=1)) * reward_prob
      return jnp.sum(prob * rewards.sum(axis=1))
    return ravel_pytree(jax.grad(expected_total)(params))[0]

  @jax.jit
  def score_gradients(params, to_go):  # one estimate per history, [64, n_params]
    def one(a, r, g):
      grad = jax.grad(lambda p: jnp.sum(log_probs(p, a, r) * g))(params)
      return ravel_pytree(grad)[0]
    return jax.vmap(one)(actions, rewards, to_go)

  weights = np.exp(np.asarray(all_log_probs(params, actions, rewards)).sum(axis=1)) * reward_prob
  assert abs(weights.sum() - 1.0) < 1e-5
  exact = np.asarray(exact_gradient(params))
  variance = {}
  for name, r in (("sampled", rewards), ("expected", means[actions])):
    to_go = np.cumsum(r[:, ::-1], axis=1)[:, ::-1]  # sum_{t' >= t} r_t'
    grads = np.asarray(score_gradients(params, jnp.asarray(to_go, jnp.float32)))
    mean = weights @ grads
    np.testing.assert_allclose(mean, exact, rtol=1e-4, atol=1e-6)
    variance[name] = float(weights @ np.sum((grads - mean) ** 2, axis=1))
  assert np.abs(exact).max() > 1e-3  # a gradient worth comparing
  assert variance["expected"] < 0.8 * variance["sampled"], variance


def test_rl2_embedding_and_head_hidden_add_relu_layers_before_and_after_the_gru():
  """``embedding=E``: the GRU reads ``relu(x W + b)``; ``head_hidden=K``: each head reads
  ``relu(h W1 + b1)``. The rollout's log-probabilities and values equal a hand computation of
  that path, and PPO's replay uses it too: one update at a negligible rate sees the rollout's
  own log-probabilities (ratio 1, nothing clipped). Widths < 1 are refused, and the default
  learner's weights are those it had before the options existed."""
  env = envs.tabular_mdp(states=4, actions=3, episode_length=3)
  learner = rl2(env, episodes=2, hidden=6, tasks_per_step=4, minibatches=1, epochs=1,
                learning_rate=1e-12, embedding=5, head_hidden=7)
  state = learner.init(jax.random.key(0))
  params = state.params
  input_dim = 4 + 3 + 2  # one-hot state, one-hot previous action, reward, done
  assert params["embed"]["w"].shape == (input_dim, 5)
  assert params["gru"]["w_x"].shape[0] == 5
  trial = learner.rollout(params, env.sample_task(jax.random.key(2)), jax.random.key(3))
  h = jnp.zeros(6)
  for t in range(learner.trial_length):
    x = trial.inputs[t]
    assert x.shape == (input_dim,)
    h = gru_cell(params["gru"], h, jax.nn.relu(x @ params["embed"]["w"] + params["embed"]["b"]))
    h_pi = jax.nn.relu(h @ params["policy_hidden"]["w"] + params["policy_hidden"]["b"])
    h_v = jax.nn.relu(h @ params["value_hidden"]["w"] + params["value_hidden"]["b"])
    logits = h_pi @ params["policy"]["w"] + params["policy"]["b"]
    np.testing.assert_allclose(float(trial.log_probs[t]),
                               float(jax.nn.log_softmax(logits)[trial.actions[t]]), atol=1e-5)
    np.testing.assert_allclose(float(trial.values[t]),
                               float((h_v @ params["value"]["w"] + params["value"]["b"])[0]),
                               atol=1e-5)
  assert params["policy"]["w"].shape == (7, 3) and params["value"]["w"].shape == (7, 1)
  _, metrics = learner.train_step(state, jax.random.key(4))
  assert abs(float(metrics["approx_kl"])) < 1e-6, metrics
  assert float(metrics["clip_fraction"]) == 0.0
  with pytest.raises(ValueError, match="embedding"):
    rl2(env, episodes=2, embedding=0)
  with pytest.raises(ValueError, match="head_hidden"):
    rl2(env, episodes=2, head_hidden=0)
  # Weights of the default learner, drawn as before these options (key split in three).
  plain = rl2(env, episodes=2, hidden=6, tasks_per_step=4, minibatches=1)
  k_gru, k_pi, _ = jax.random.split(jax.random.key(0), 3)
  default = plain.init(jax.random.key(0)).params
  np.testing.assert_array_equal(
      default["policy"]["w"], 0.01 * jax.nn.initializers.orthogonal()(k_pi, (6, 3)))
  assert set(default) == {"gru", "policy", "value"}
  k_x, _ = jax.random.split(k_gru, 2)
  np.testing.assert_array_equal(default["gru"]["w_x"], jax.random.uniform(
      k_x, (9, 18), minval=-1 / np.sqrt(9), maxval=1 / np.sqrt(9)))
  np.testing.assert_array_equal(default["gru"]["b"], 0.0)
  # chrono_init: update-gate biases log(U[1, T - 1]) for T = 6 steps per trial, others zero.
  bias = rl2(env, episodes=2, hidden=64, chrono_init=True).init(jax.random.key(0)).params
  bias = np.asarray(bias["gru"]["b"]).reshape(3, 64)
  np.testing.assert_array_equal(bias[[0, 2]], 0.0)
  assert 0.0 <= bias[1].min() < 0.3 and np.log(5) - 0.3 < bias[1].max() <= np.log(5) + 1e-6
  with pytest.raises(TypeError, match="chrono_init"):
    rl2(env, episodes=2, chrono_init=1)


def test_rl2_reward_prediction_loss_is_each_taken_actions_reward_error():
  """``reward_prediction_coef>0``: a head on what the policy layer reads predicts each action's
  reward; the reported loss is ``mean((pred_t[a_t] - r_t)^2) / 2`` over the step's trials at
  the parameters before the update (one epoch, one minibatch), recomputed here by hand from the
  same tasks and rollout keys. Off by default (no head, no metric); a negative coef is
  refused."""
  from metajax.envs.core import sample_tasks

  env = envs.tabular_mdp(states=4, actions=3, episode_length=3)
  learner = rl2(env, episodes=2, hidden=6, tasks_per_step=4, minibatches=1, epochs=1,
                head_hidden=5, reward_prediction_coef=0.5)
  state = learner.init(jax.random.key(0))
  params = jax.tree.map(jnp.array, state.params)  # train_step donates the state
  _, metrics = learner.train_step(state, jax.random.key(1))
  k_tasks, k_roll, _ = jax.random.split(jax.random.fold_in(jax.random.key(1), 0), 3)
  trials = jax.vmap(learner.rollout, in_axes=(None, 0, 0))(
      params, sample_tasks(env, k_tasks, 4), jax.random.split(k_roll, 4))
  errors = []
  for b in range(4):
    h = jnp.zeros(6)
    for t in range(learner.trial_length):
      h = gru_cell(params["gru"], h, trials.inputs[b, t])
      h_pi = jax.nn.relu(h @ params["policy_hidden"]["w"] + params["policy_hidden"]["b"])
      predicted = h_pi @ params["reward"]["w"] + params["reward"]["b"]
      errors.append(float(predicted[trials.actions[b, t]] - trials.rewards[b, t]))
  expected = 0.5 * np.mean(np.square(errors))
  np.testing.assert_allclose(float(metrics["reward_prediction_loss"]), expected, rtol=1e-5)
  plain = rl2(env, episodes=2, hidden=6, tasks_per_step=4, minibatches=1)
  plain_state = plain.init(jax.random.key(0))
  assert "reward" not in plain_state.params
  assert "reward_prediction_loss" not in plain.train_step(plain_state, jax.random.key(1))[1]
  with pytest.raises(ValueError, match="reward_prediction_coef"):
    rl2(env, episodes=2, reward_prediction_coef=-1.0)


def test_rl2_expected_rewards_train_on_the_arm_means():
  """``expected_rewards=True`` records each pull's arm mean beside the sampled reward and
  trains on it: identical to the default when rewards are deterministic (arm means 0 or 1),
  different when they are not; the GRU still sees the sampled reward. An environment without
  ``info["expected_reward"]`` is refused by name."""
  env = envs.bernoulli_bandit(arms=2, pulls=4)
  kwargs = {"episodes": 4, "hidden": 4, "tasks_per_step": 4, "minibatches": 2}
  expected = rl2(env, **kwargs, expected_rewards=True)
  params = expected.init(jax.random.key(0)).params
  task = envs.BanditTask(jnp.array([0.3, 0.8]))
  trial = expected.rollout(params, task, jax.random.key(1))
  np.testing.assert_allclose(np.asarray(trial.expected_rewards),
                             np.asarray(task.means[trial.actions]))
  assert set(np.asarray(trial.rewards).tolist()) <= {0.0, 1.0}
  np.testing.assert_array_equal(np.asarray(trial.inputs[1:, 3]), np.asarray(trial.rewards[:-1]))

  def one_step(learner):
    state = learner.init(jax.random.key(0))
    return np.asarray(ravel_pytree(learner.train_step(state, jax.random.key(2))[0].params)[0])

  for arms, same in ((lambda key: envs.BanditTask(jnp.array([0.0, 1.0])), True),
                     (env.sample_task, False)):
    cases = [rl2(env._replace(sample_task=arms), **kwargs, expected_rewards=flag)
             for flag in (False, True)]
    a, b = (one_step(learner) for learner in cases)
    assert np.array_equal(a, b) == same
  no_info = env._replace(step=lambda *args: (*env.step(*args)[:4], {}))
  with pytest.raises(ValueError, match="info\\['expected_reward'\\]"):
    rl2(no_info, **kwargs, expected_rewards=True)
  with pytest.raises(TypeError, match="expected_rewards"):
    rl2(env, **kwargs, expected_rewards="yes")


# --- Bandit baselines -------------------------------------------------------------------------


def test_bayes_optimal_value_small_cases_by_hand():
  # One pull of two U[0,1] arms: 1/2. Two pulls: pull arm, win (p 1/2) -> stay (2/3),
  # lose -> switch (1/2): 1/2 + 1/2 * 2/3 + 1/2 * 1/2 = 13/12.
  assert bb.bayes_optimal(2, 1)[1] == pytest.approx(0.5)
  assert bb.bayes_optimal(2, 2)[1] == pytest.approx(13 / 12)
  with pytest.raises(ValueError, match="posterior states"):
    bb.bayes_optimal(5, 100)


def test_bandit_baselines_order_and_simulation_agree_with_dp():
  rng = np.random.default_rng(0)
  means = rng.random((4000, 2))
  choose, value = bb.bayes_optimal(2, 10)
  optimal = bb.mean_ci(bb.play(means, 10, choose, seed=1))
  assert abs(optimal[0] - value) < 2 * optimal[1]  # simulation within its 95% CI (x2)
  random = bb.mean_ci(bb.play(means, 10, bb.random_strategy, seed=1))
  assert abs(random[0] - 5.0) < 2 * random[1]
  thompson = bb.mean_ci(bb.play(means, 10, bb.thompson, seed=1))
  ucb = bb.mean_ci(bb.play(means, 10, bb.ucb1, seed=1))
  assert random[0] < ucb[0] < value and random[0] < thompson[0] < value


# --- Trainer / CLI ----------------------------------------------------------------------------


def test_cli_trains_rl2_and_resumes_bit_identically(tmp_path, capsys):
  import shutil

  from metajax.cli import main
  from metajax.train.metrics_log import read_metrics
  from metajax.train.rl import evaluate_rl_run, restore_rl_params

  run = tmp_path / "run"
  args = ["train", "configs/rl2_bandits.py:k5n10", "meta_steps=6", "log_every=1",
          "checkpoint_every=3", "test_tasks=50", f"run_dir={run}", "env_kwargs.arms=2",
          "episodes=3", "algorithm_kwargs.hidden=4", "algorithm_kwargs.tasks_per_step=4",
          "algorithm_kwargs.minibatches=1", "algorithm_kwargs.epochs=1", "--no-progress"]
  assert main(args) == 0
  assert "test: total reward per trial" in capsys.readouterr().out
  first = read_metrics(run)
  saved_test = json.loads((run / "results.json").read_text())["test"]
  assert set(saved_test["greedy"]) == {"mean", "ci95"}
  assert evaluate_rl_run(run) == saved_test and saved_test["step"] == 6
  config, params, step = restore_rl_params(run)
  assert step == 6 and config.algorithm_kwargs["hidden"] == 4
  assert params["gru"]["w_h"].shape == (4, 12)
  assert [r["step"] for r in first] == [1, 2, 3, 4, 5, 6]
  assert (run / "learning_curve.png").exists() and (run / "results.json").exists()
  shutil.rmtree(run / "checkpoints" / "6")  # as if killed between steps 3 and 6
  assert main(args) == 0
  assert read_metrics(run) == first


def test_a_branched_rl2_run_ends_where_the_decaying_run_from_scratch_does(tmp_path):
  """``branch_rl_run``: a constant-rate run's step-2 checkpoint, branched into a config that
  decays from step 2, trains to the same step-4 state (digest) and metrics as that config run
  from step 0, and differs from the constant-rate run; other config changes are refused."""
  from metajax.train import branch_rl_run, load_config, train_rl
  from metajax.train.checkpoint import Checkpointer, state_digest
  from metajax.train.metrics_log import read_metrics
  from metajax.train.rl import _build_run

  tiny = ["env_kwargs.arms=2", "episodes=3", "algorithm_kwargs.hidden=4",
          "algorithm_kwargs.tasks_per_step=4", "algorithm_kwargs.minibatches=2",
          "algorithm_kwargs.epochs=1", "test_tasks=10", "log_every=1", "checkpoint_every=2"]
  decay = ["algorithm_kwargs.learning_rate_decay_begin=2",
           "algorithm_kwargs.learning_rate_decay_steps=2"]
  config = lambda run, *extra: load_config("configs/rl2_bandits.py:k5n10",
                                           [*tiny, "meta_steps=4", f"run_dir={run}", *extra])
  train_rl(config(tmp_path / "constant"), progress=False)
  train_rl(config(tmp_path / "scratch", *decay), progress=False)
  branch = config(tmp_path / "branch", *decay)
  assert branch_rl_run(tmp_path / "constant", 2, branch) == tmp_path / "branch"
  assert Checkpointer(tmp_path / "branch" / "checkpoints").steps() == [2]
  train_rl(branch, progress=False)

  def digest(run):
    template = _build_run(config(run, *([] if run.name == "constant" else decay))).state
    return state_digest(Checkpointer(run / "checkpoints").restore(4, template))

  assert digest(tmp_path / "branch") == digest(tmp_path / "scratch")
  assert read_metrics(tmp_path / "branch") == read_metrics(tmp_path / "scratch")
  assert digest(tmp_path / "branch") != digest(tmp_path / "constant")
  (tmp_path / "torn").mkdir()  # a source whose metrics end in a half-written line
  for name in ("checkpoints", "config.json"):
    (tmp_path / "torn" / name).symlink_to(tmp_path / "constant" / name)
  (tmp_path / "torn" / "metrics.jsonl").write_text(
      (tmp_path / "constant" / "metrics.jsonl").read_text() + '{"split": "train", "st')
  assert branch_rl_run(tmp_path / "torn", 2, config(tmp_path / "from_torn", *decay)).is_dir()
  assert read_metrics(tmp_path / "from_torn") == read_metrics(tmp_path / "scratch")[:2]
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
  with pytest.raises(ValueError, match=r"differ in algorithm_kwargs.hidden \(4 -> 8\);"):
    branch_rl_run(tmp_path / "constant", 2,
                  config(tmp_path / "other", *decay, "algorithm_kwargs.hidden=8"))
  with pytest.raises(ValueError, match="step=3 is after learning_rate_decay_begin=2"):
    branch_rl_run(tmp_path / "constant", 3, config(tmp_path / "late", *decay))
  with pytest.raises(ValueError, match="learning_rate_decay_steps set"):
    branch_rl_run(tmp_path / "constant", 2, config(tmp_path / "none"))
  with pytest.raises(ValueError, match=r"step=1 is not a saved checkpoint .*\(saved: \[2, 4\]"):
    branch_rl_run(tmp_path / "constant", 1, config(tmp_path / "unsaved", *decay))
  with pytest.raises(ValueError, match="step=2 is after meta_steps=1"):
    branch_rl_run(tmp_path / "constant", 2, config(tmp_path / "short", *decay, "meta_steps=1"))
  with pytest.raises(ValueError, match="exists"):
    branch_rl_run(tmp_path / "constant", 2, branch)
  with pytest.raises(TypeError, match="step='2' must be an int"):
    branch_rl_run(tmp_path / "constant", "2", config(tmp_path / "text", *decay))
  with pytest.raises(ValueError, match="step=-2 must be >= 0"):
    branch_rl_run(tmp_path / "constant", -2, config(tmp_path / "negative", *decay))
  with pytest.raises(ValueError, match="needs an RL² RLConfig .* algorithm 'maml_rl'"):
    branch_rl_run(tmp_path / "constant", 2,
                  config(tmp_path / "maml", *decay).replace(algorithm="maml_rl"))
  (tmp_path / "maml_source").mkdir()
  (tmp_path / "maml_source" / "config.json").write_text(
      load_config("configs/maml_rl_navigation.py:smoke").to_json())
  with pytest.raises(ValueError, match="maml_source is a maml_rl run; branch_rl_run branches"):
    branch_rl_run(tmp_path / "maml_source", 2, config(tmp_path / "from_maml", *decay))
  assert not any((tmp_path / name).exists()
                 for name in ("text", "negative", "maml", "from_maml", "late", "unsaved"))
  with pytest.raises(ValueError, match="decays its learning rate from step 2, before step=4"):
    branch_rl_run(tmp_path / "scratch", 4, config(tmp_path / "late", "meta_steps=6",
                                                  "algorithm_kwargs.learning_rate_decay_begin=4",
                                                  "algorithm_kwargs.learning_rate_decay_steps=2"))


# Two host-platform devices need XLA_FLAGS before JAX initialises, hence a subprocess. It
# compares rl2 with a 2-device mesh against one device, step by step, and trains, then resumes,
# a run with the trainer's `devices` key.
_TWO_DEVICES = textwrap.dedent("""
  import json, sys
  import jax, numpy as np
  import metajax.envs as envs
  from metajax.algorithms.rl2 import gru_cell, rl2
  from metajax.train.rl import RLConfig, restore_rl_params, train_rl

  assert jax.device_count() == 2
  root = sys.argv[1]
  env = envs.bernoulli_bandit(arms=3, pulls=6)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("tasks",))
  kw = dict(episodes=6, hidden=8, tasks_per_step=8, minibatches=2, epochs=2)
  one, two = rl2(env, **kw), rl2(env, **kw, mesh=mesh)
  s1, s2 = one.init(jax.random.key(0)), two.init(jax.random.key(0))
  steps = []
  for _ in range(3):
    s1, m1 = one.train_step(s1, jax.random.key(1))
    s2, m2 = two.train_step(s2, jax.random.key(1))
    diff = max(float(np.max(np.abs(a - b))) for a, b in
               zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)))
    steps.append({"diff": diff, "one": {k: float(v) for k, v in m1.items()},
                  "two": {k: float(v) for k, v in m2.items()}})
  moved = max(float(np.max(np.abs(a - b))) for a, b in
              zip(jax.tree.leaves(s1.params), jax.tree.leaves(one.init(jax.random.key(0)).params)))
  replicated = all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 2
                   for x in jax.tree.leaves(s2.params))
  # The options that add layers and the auxiliary loss, on the mesh too.
  kw_options = dict(kw, embedding=5, head_hidden=6, chrono_init=True,
                    reward_prediction_coef=0.5, previous_observation=True)
  o1, o2 = rl2(env, **kw_options), rl2(env, **kw_options, mesh=mesh)
  q1, q2 = o1.init(jax.random.key(0)), o2.init(jax.random.key(0))
  for _ in range(2):
    q1, n1 = o1.train_step(q1, jax.random.key(1))
    q2, n2 = o2.train_step(q2, jax.random.key(1))
  options_diff = max(float(np.max(np.abs(a - b))) for a, b in
                     zip(jax.tree.leaves(q1.params), jax.tree.leaves(q2.params)))
  options_loss = [float(n1["reward_prediction_loss"]), float(n2["reward_prediction_loss"])]
  from metajax.train.rl import _training_mesh
  try:
    _training_mesh(RLConfig(algorithm="maml_rl", env="point_navigation", devices="all"))
    maml_all = None
  except ValueError as error:
    maml_all = str(error)
  try:
    rl2(env, **{**kw, "tasks_per_step": 6}, mesh=mesh)
    refused = None
  except ValueError as error:
    refused = str(error)
  try:
    rl2(env, **kw, mesh=jax.sharding.Mesh(np.array(jax.devices()).reshape(1, 2),
                                          ("tasks", "other")))
    repeats = None
  except ValueError as error:
    repeats = str(error)
  config = RLConfig(env_kwargs={"arms": 3, "pulls": 6}, episodes=6, meta_steps=4,
                    checkpoint_every=2, log_every=1, test_tasks=20,
                    algorithm_kwargs={"hidden": 8, "tasks_per_step": 8, "minibatches": 2,
                                      "epochs": 2})
  train_rl(config.replace(run_dir=root + "/one", meta_steps=6), progress=False)
  train_rl(config.replace(run_dir=root + "/two", devices=2), progress=False)
  train_rl(config.replace(run_dir=root + "/two", meta_steps=6), progress=False)  # 1 device
  runs = {name: restore_rl_params(root + "/" + name) for name in ("one", "two")}
  run_diff = max(float(np.max(np.abs(a - b))) for a, b in
                 zip(jax.tree.leaves(runs["one"][1]), jax.tree.leaves(runs["two"][1])))
  print("RESULT " + json.dumps({"steps": steps, "moved": moved, "replicated": replicated,
                                "refused": refused, "repeats": repeats, "run_diff": run_diff,
                                "options_diff": options_diff, "options_loss": options_loss,
                                "maml_all": maml_all,
                                "run_steps": [runs["one"][2], runs["two"][2]],
                                "devices": json.load(open(root + "/two/config.json"))["devices"]}))
""")


def test_rl2_on_two_devices_takes_the_one_device_steps(tmp_path):
  """``rl2(..., mesh=...)`` over 2 host devices: the same rollouts (equal trial returns) and the
  same parameters up to float summation order at every step, parameters replicated; the
  trainer's ``devices=2`` run, resumed on one device, ends at the one-device run's parameters."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  proc = subprocess.run([sys.executable, "-c", _TWO_DEVICES, str(tmp_path)], env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
  assert out["moved"] > 1e-3  # the steps changed the parameters
  for step in out["steps"]:
    assert step["diff"] < 1e-5, step
    assert step["one"]["trial_return"] == step["two"]["trial_return"]
    for key in ("loss", "entropy", "approx_kl"):
      assert step["one"][key] == pytest.approx(step["two"][key], rel=1e-4, abs=1e-6), key
  assert out["replicated"]
  assert "tasks_per_step / minibatches = 6 / 2 = 3" in out["refused"]
  assert "multiple of minibatches x devices = 4" in out["refused"]
  assert "mesh axes {'other': 2} besides 'tasks'" in out["repeats"]
  assert out["run_steps"] == [6, 6] and out["devices"] is None
  assert out["run_diff"] < 1e-5
  assert out["options_diff"] < 1e-5
  assert "'all', 2 devices here, but MAML-RL trains on one device" in out["maml_all"]
  assert out["options_loss"][0] == pytest.approx(out["options_loss"][1], rel=1e-5)


def test_rl2_mesh_and_devices_are_checked_before_anything_runs(tmp_path, capsys):
  env = envs.bernoulli_bandit(arms=2, pulls=3)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("batch",))
  with pytest.raises(ValueError, match="must be a jax.sharding.Mesh with a 'tasks' axis"):
    rl2(env, episodes=3, hidden=4, tasks_per_step=4, minibatches=2, mesh=mesh)
  with pytest.raises(ValueError, match="config key 'devices' must be 'all', a number"):
    RLConfig(devices=0).validated()
  with pytest.raises(ValueError, match="MAML-RL trains on one device"):
    RLConfig(algorithm="maml_rl", env="point_navigation", devices=2).validated()
  from metajax.train.rl import train_rl

  run = tmp_path / "run"
  with pytest.raises(ValueError, match="config key 'devices' is 3 but this run has 1 device"):
    train_rl(RLConfig(devices=3, run_dir=str(run)), progress=False)
  assert not run.exists()
  # 'all' on a one-device machine is one device, which MAML-RL accepts.
  assert jax.device_count() == 1
  RLConfig(algorithm="maml_rl", env="point_navigation", devices="all").validated()
  # The CLI reports both as config errors (exit 2) before a run folder exists, and refuses
  # devices given both as a flag and as an override.
  from metajax.cli import main

  rl = ["train", "configs/rl2_bandits.py:k5n10", f"run_dir={run}", "--no-progress"]
  assert main([*rl, "devices=3"]) == 2
  assert main([*rl, "--devices", "2", "devices=1"]) == 2
  # The few-shot trainer's configs too, before the run folder (and its lock) exists.
  assert main(["train", "configs/maml_omniglot.py:5w1s", f"run_dir={run}", "devices=3",
               "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert err.count("metajax train: bad config: config key 'devices' is 3 but this run has 1") == 2
  assert "devices given twice, as --devices 2 and as the override 'devices=1'" in err
  assert not run.exists()
  # A branch for devices this machine lacks is refused before its folder is written.
  from metajax.train.rl import branch_rl_run

  with pytest.raises(ValueError, match="config key 'devices' is 2 but this run has 1 device"):
    branch_rl_run(tmp_path / "none", 1, RLConfig(devices=2, run_dir=str(tmp_path / "b")))
  assert not (tmp_path / "b").exists()


def test_ctrl_c_saves_the_last_step_and_the_same_command_resumes(tmp_path):
  """SIGINT to ``metajax train`` on an RL² config: the step finishes, a checkpoint of it is
  saved, the exit code is 130 with no traceback, and the same command resumes from that step."""
  import signal
  import time

  from metajax.train.checkpoint import Checkpointer
  from metajax.train.metrics_log import read_metrics

  run = tmp_path / "run"
  command = [sys.executable, "-m", "metajax.cli", "train", "configs/rl2_bandits.py:k5n10",
             "meta_steps=1000000", "log_every=1", "checkpoint_every=1000000", "test_tasks=20",
             f"run_dir={run}", "env_kwargs.arms=2", "episodes=3", "algorithm_kwargs.hidden=4",
             "algorithm_kwargs.tasks_per_step=4", "algorithm_kwargs.minibatches=1",
             "algorithm_kwargs.epochs=1", "--no-progress"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env)
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and proc.poll() is None:
    if (run / "metrics.jsonl").exists() and len(read_metrics(run)) >= 5:
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr
  stopped = int(re.search(r"stopped \(SIGINT\) after step (\d+)", stderr).group(1))
  assert stopped >= 5
  assert Checkpointer(run / "checkpoints").steps()[-1] == stopped
  assert [r["step"] for r in read_metrics(run)] == list(range(1, stopped + 1))
  resumed = subprocess.run([*command[:5], f"meta_steps={stopped + 2}", *command[6:]], env=env,
                           capture_output=True, text=True, timeout=300, check=False)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resumed {run} at step {stopped}" in resumed.stderr
  assert [r["step"] for r in read_metrics(run)] == list(range(1, stopped + 3))

