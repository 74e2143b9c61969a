"""Proximal Policy Optimization pieces: GAE advantages and the clipped surrogate loss.

Used by :func:`metajax.algorithms.rl2.rl2` as its outer ("slow") algorithm; both
functions are pure and work on one trajectory (``vmap`` them over a batch).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.core.types import Array


def gae_advantages(rewards: Array, values: Array, dones: Array, last_value: Array, *,
                   gamma: float, gae_lambda: float) -> tuple[Array, Array]:
  """Generalised advantage estimates and value targets of one trajectory.

  With ``d_t`` the flag that the episode ended after step ``t``:
  ``delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t`` and
  ``A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}``, where ``V_T = last_value``.

  Args:
    rewards: ``[T]`` rewards.
    values: ``[T]`` value estimates ``V(s_t)``.
    dones: ``[T]`` episode-ended flags (nothing is bootstrapped across them).
    last_value: ``V(s_T)``, the bootstrap after the last step.
    gamma: discount.
    gae_lambda: GAE's lambda (0: one-step TD; 1: Monte-Carlo return minus V).

  Returns:
    ``(advantages, returns)``, each ``[T]``; ``returns = advantages + values``.

  Example:
    >>> import jax.numpy as jnp
    >>> adv, ret = gae_advantages(jnp.ones(2), jnp.zeros(2), jnp.zeros(2), jnp.zeros(()),
    ...                           gamma=1.0, gae_lambda=1.0)
    >>> adv.tolist()
    [2.0, 1.0]

  References:
    Schulman et al., "High-Dimensional Continuous Control Using Generalized
    Advantage Estimation", ICLR 2016. https://arxiv.org/abs/1506.02438
  """
  not_done = 1.0 - jnp.asarray(dones, jnp.float32)
  next_values = jnp.concatenate([values[1:], jnp.reshape(last_value, (1,))])
  deltas = rewards + gamma * not_done * next_values - values

  def backward(carry, xs):
    delta, keep = xs
    advantage = delta + gamma * gae_lambda * keep * carry
    return advantage, advantage

  _, advantages = jax.lax.scan(backward, jnp.zeros((), deltas.dtype), (deltas, not_done),
                               reverse=True)
  return advantages, advantages + values


class PPOLoss(NamedTuple):
  """The terms of :func:`ppo_loss` (``total`` is what is minimised); all scalars.

  Attributes:
    total: ``policy + value_coef * value - entropy_coef * entropy``.
    policy: the clipped surrogate loss (negated, so lower is better).
    value: half the mean squared error of the value predictions.
    entropy: the mean policy entropy (nats).
    approx_kl: ``mean((rho - 1) - log rho)``, an estimate of ``KL(old || new)`` (no gradient).
    clip_fraction: the fraction of samples whose ratio ``rho`` left ``[1 - eps, 1 + eps]`` (no
      gradient).

  Example:
    >>> import jax.numpy as jnp
    >>> out = ppo_loss(jnp.zeros(2), jnp.zeros(2), jnp.ones(2), jnp.zeros(2), jnp.zeros(2),
    ...                jnp.zeros(2))
    >>> float(out.approx_kl), float(out.clip_fraction)     # same policy: ratio 1
    (0.0, 0.0)

  References:
    Schulman, Wolski, Dhariwal, Radford & Klimov, "Proximal Policy Optimization Algorithms",
    2017. https://arxiv.org/abs/1707.06347
  """

  total: Array
  policy: Array
  value: Array
  entropy: Array
  approx_kl: Array
  clip_fraction: Array


def ppo_loss(log_probs: Array, old_log_probs: Array, advantages: Array, values: Array,
             returns: Array, entropy: Array, *, clip_eps: float = 0.2, value_coef: float = 0.5,
             entropy_coef: float = 0.01) -> PPOLoss:
  """PPO's clipped surrogate plus value loss minus entropy bonus, averaged over samples.

  ``policy = -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))`` with
  ``rho = exp(log_probs - old_log_probs)``; ``value = mean((values - returns)^2) / 2``;
  ``total = policy + value_coef * value - entropy_coef * mean(entropy)``.
  ``advantages`` and ``returns`` are targets: gradients do not flow into them.

  Args:
    log_probs: log-probabilities of the taken actions under the current policy.
    old_log_probs: the same under the policy that collected the data.
    advantages: advantage estimates (normalise them beforehand if wanted).
    values: current value predictions.
    returns: value targets.
    entropy: per-sample policy entropy.
    clip_eps: the ratio clip epsilon.
    value_coef: weight of the value loss.
    entropy_coef: weight of the entropy bonus.

  Returns:
    A :class:`PPOLoss`.

  Example:
    >>> import jax.numpy as jnp
    >>> out = ppo_loss(jnp.zeros(1), jnp.zeros(1), jnp.ones(1), jnp.zeros(1), jnp.zeros(1),
    ...                jnp.zeros(1))
    >>> float(out.policy)
    -1.0

  References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017, Eq. 7 and 9.
    https://arxiv.org/abs/1707.06347
  """
  advantages = jax.lax.stop_gradient(advantages)
  returns = jax.lax.stop_gradient(returns)
  log_ratio = log_probs - jax.lax.stop_gradient(old_log_probs)
  ratio = jnp.exp(log_ratio)
  unclipped = ratio * advantages
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
  policy = -jnp.mean(jnp.minimum(unclipped, clipped))
  value = 0.5 * jnp.mean(jnp.square(values - returns))
  mean_entropy = jnp.mean(entropy)
  total = policy + value_coef * value - entropy_coef * mean_entropy
  approx_kl = jnp.mean((ratio - 1.0) - log_ratio)
  clip_fraction = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
  return PPOLoss(total, policy, value, mean_entropy, jax.lax.stop_gradient(approx_kl),
                 jax.lax.stop_gradient(clip_fraction))
