"""Can RL²'s GRU learn a tabular MDP's per-state reward record when it is told the answer?

Every RL² run on ``configs/rl2_tabular_mdp.py:n10`` ends at the level of the state-blind
baseline (``metajax.envs.mdp_baselines.state_blind``, 119.46 on the test MDPs), far below the
myopic one (150.59), which only needs a record of what each action paid in each state. This
probe takes RL out of the question: the GRU reads the inputs RL² feeds it, ``(s_t, a_{t-1},
r_{t-1}, d_{t-1})`` (optionally ``s_{t-1}`` too), on trials played with uniformly random actions
on fresh MDPs, and a head predicts each action's reward at every step; the loss is
``mean((pred_t[a_t] - r_t)^2) / 2``, supervised, with Adam.

The reference is the Bayes-optimal predictor, the posterior mean of ``r(s_t, a_t)`` given the
trial so far (prior N(1, 1), unit reward noise: ``(1 + sum) / (1 + count)`` of that pair's
earlier rewards), computed exactly on the same trials; it scores about 0.82 on these
random-action trials at n=10, while the prior alone (predict 1) scores about 1.0. A GRU that
reaches the posterior's loss keeps the record myopic needs; one stuck near the prior's loss
does not.

    python benchmarks/rl2_mdp_reward_memory.py --steps 2000
    python benchmarks/rl2_mdp_reward_memory.py --steps 2000 --previous-observation \\
        --head-hidden 128 --chrono

Prints the evaluation loss on 1,000 fixed MDPs every ``--log-every`` steps beside the posterior
and prior losses on the same trials.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

STATES, ACTIONS, EPISODE_LENGTH = 10, 5, 10


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000, help="Adam steps")
  parser.add_argument("--episodes", type=int, default=10, help="episodes per trial (n)")
  parser.add_argument("--batch", type=int, default=256, help="fresh MDPs (trials) per step")
  parser.add_argument("--hidden", type=int, default=128, help="GRU width")
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  parser.add_argument("--previous-observation", action="store_true",
                      help="also feed s_{t-1}, as rl2(previous_observation=True)")
  parser.add_argument("--head-hidden", type=int, default=None,
                      help="a ReLU layer of this width before the prediction head")
  parser.add_argument("--chrono", action="store_true",
                      help="chrono initialization of the update gate, as rl2(chrono_init=True)")
  parser.add_argument("--log-every", type=int, default=250)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="JSON file for the curve")
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp
  import optax

  import metajax.envs as envs
  from metajax.algorithms.rl2 import gru_cell, gru_init

  env = envs.tabular_mdp(states=STATES, actions=ACTIONS, episode_length=EPISODE_LENGTH)
  length = args.episodes * EPISODE_LENGTH
  input_dim = STATES + ACTIONS + 2 + STATES * args.previous_observation

  def play(task, key):
    """One trial of uniformly random actions: RL²'s inputs, the actions and rewards."""
    k_reset, k_steps = jax.random.split(key)
    obs, state = env.reset(k_reset, task)

    def body(carry, step_key):
      state, obs, prev_action, prev_reward, prev_done, prev_obs = carry
      k_act, k_env, k_reset = jax.random.split(step_key, 3)
      before = [prev_obs] if args.previous_observation else []
      x = jnp.concatenate([obs, jax.nn.one_hot(prev_action, ACTIONS), prev_reward[None],
                           prev_done[None], *before])
      action = jax.random.randint(k_act, (), 0, ACTIONS)
      obs_next, state_next, reward, done, _ = env.step(k_env, state, action, task)
      obs_reset, state_reset = env.reset(k_reset, task)
      state_next = jax.tree.map(lambda a, b: jnp.where(done, a, b), state_reset, state_next)
      obs_next = jnp.where(done, obs_reset, obs_next)
      carry = (state_next, obs_next, action, reward, jnp.asarray(done, jnp.float32), obs)
      return carry, (x, jnp.argmax(obs), action, reward)

    carry = (state, obs, jnp.zeros((), jnp.int32), jnp.zeros(()), jnp.zeros(()),
             jnp.zeros(STATES))
    return jax.lax.scan(body, carry, jax.random.split(k_steps, length))[1]

  def trials(key, count):
    k_tasks, k_play = jax.random.split(key)
    tasks = envs.sample_tasks(env, k_tasks, count)
    return jax.vmap(play)(tasks, jax.random.split(k_play, count))

  def posterior_loss(states, actions, rewards):
    """The exact posterior-mean predictor's loss on one trial, ``[T]`` arrays."""
    def body(table, step):
      s, a, r = step
      sums, counts = table
      predicted = (1.0 + sums[s, a]) / (1.0 + counts[s, a])
      return (sums.at[s, a].add(r), counts.at[s, a].add(1.0)), (predicted - r) ** 2

    zeros = jnp.zeros((STATES, ACTIONS))
    return 0.5 * jnp.mean(jax.lax.scan(body, (zeros, zeros), (states, actions, rewards))[1])

  def init(key):
    k_gru, k_head, k_out = jax.random.split(key, 3)
    width = args.hidden if args.head_hidden is None else args.head_hidden
    params = {"gru": gru_init(k_gru, input_dim, args.hidden,
                              chrono=length if args.chrono else None),
              "out": {"w": jax.nn.initializers.orthogonal()(k_out, (width, ACTIONS)),
                      "b": jnp.ones(ACTIONS)}}  # start at the prior mean, 1
    if args.head_hidden is not None:
      params["head"] = {"w": jax.nn.initializers.orthogonal(jnp.sqrt(2.0))(
          k_head, (args.hidden, args.head_hidden)), "b": jnp.zeros(args.head_hidden)}
    return params

  def loss(params, data):
    inputs, _, actions, rewards = data

    def body(h, x):
      h = jax.vmap(gru_cell, in_axes=(None, 0, 0))(params["gru"], h, x)
      features = h
      if "head" in params:
        features = jax.nn.relu(h @ params["head"]["w"] + params["head"]["b"])
      return h, features @ params["out"]["w"] + params["out"]["b"]

    h0 = jnp.zeros((inputs.shape[0], args.hidden))
    predicted = jnp.swapaxes(jax.lax.scan(body, h0, jnp.swapaxes(inputs, 0, 1))[1], 0, 1)
    taken = jnp.take_along_axis(predicted, actions[..., None], axis=-1)[..., 0]
    return 0.5 * jnp.mean((taken - rewards) ** 2)

  optimizer = optax.adam(args.learning_rate)

  @jax.jit
  def step(params, opt_state, key):
    value, grads = jax.value_and_grad(loss)(params, trials(key, args.batch))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  key = jax.random.key(args.seed)
  k_init, k_eval, k_train = jax.random.split(key, 3)
  evaluation = trials(k_eval, 1000)
  posterior = float(jnp.mean(jax.vmap(posterior_loss)(*evaluation[1:])))
  prior = float(0.5 * jnp.mean((1.0 - evaluation[3]) ** 2))
  evaluate = jax.jit(loss)
  params = init(k_init)
  opt_state = optimizer.init(params)
  print(f"1,000 evaluation MDPs, n={args.episodes}: posterior-mean predictor {posterior:.4f}, "
        f"prior mean (predict 1) {prior:.4f}; flags {vars(args)}", flush=True)
  curve, start = {}, time.perf_counter()
  for i in range(1, args.steps + 1):
    params, opt_state, _ = step(params, opt_state, jax.random.fold_in(k_train, i))
    if i % args.log_every == 0 or i == args.steps:
      curve[i] = float(evaluate(params, evaluation))
      print(f"  step {i}: GRU {curve[i]:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True)
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(
        {"posterior": posterior, "prior": prior, "curve": curve, "args": vars(args),
         "load_average": os.getloadavg()[0], "jax": jax.__version__}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
