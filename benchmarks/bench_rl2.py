"""Environment steps per second of RL² training: metajax (one compiled step) vs PyTorch + gymnasium.

Both sides run the same loop on k-armed Bernoulli bandits with n pulls per trial: roll out
``tasks`` trials with a GRU policy fed (obs, one-hot previous action, reward, done), compute GAE,
then ``epochs`` x ``minibatches`` PPO updates re-running the GRU over the trials. The PyTorch side
steps a ``gymnasium.vector.SyncVectorEnv`` of ``tasks`` bandit environments in Python, one time
step at a time (as learn2learn/TorchOpt-style code does); the metajax side is
:func:`metajax.algorithms.rl2` (rollout, GAE and PPO in one jitted call).

    python benchmarks/bench_rl2.py --seconds 20        # needs torch and gymnasium
    python benchmarks/bench_rl2.py --seconds 20 --devices 2 --torch-threads 2   # both cores

``--devices N`` splits each metajax step over N devices (``rl2(..., mesh=...)``; on a CPU, N
host-platform devices share the cores, see ``XLA_FLAGS=--xla_force_host_platform_device_count``,
which the script sets). One device keeps about one core busy, so on a 2-core machine compare
``--devices 2`` with ``--torch-threads 2``.

The script also prints the workload's matmul work per PPO step (the GRU and the two heads,
forward in the rollout, forward and backward in each minibatch) and the rate at which each side
gets through it: a bound on how fast any implementation can be on the machine.

Numbers are only meaningful on an otherwise idle machine; the script prints the load average.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np


def bench_jax(args) -> float:
  import jax

  import metajax.envs as envs
  from metajax.algorithms.rl2 import rl2

  env = envs.bernoulli_bandit(arms=args.arms, pulls=args.pulls)
  mesh = None
  if args.devices > 1:
    if jax.device_count() < args.devices:
      raise SystemExit(f"--devices {args.devices}: JAX sees {jax.device_count()} device(s)")
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:args.devices]), ("tasks",))
  learner = rl2(env, episodes=args.pulls, hidden=args.hidden, tasks_per_step=args.tasks,
                epochs=args.epochs, minibatches=args.minibatches, gamma=1.0, gae_lambda=0.3,
                mesh=mesh)
  state = learner.init(jax.random.key(0))
  key = jax.random.key(1)
  state, _ = learner.train_step(state, key)  # compile
  jax.block_until_ready(state)
  steps, start, cpu = 0, time.perf_counter(), time.process_time()
  while time.perf_counter() - start < args.seconds:
    state, metrics = learner.train_step(state, key)
    steps += 1
  jax.block_until_ready(state)
  wall = time.perf_counter() - start
  args.jax_cores = (time.process_time() - cpu) / wall  # cores kept busy, on average
  return steps * args.tasks * learner.trial_length / wall


def matmul_ceiling(args) -> float:
  """GFLOP/s of the replay's recurrent matmul alone on one device: a ``lax.scan`` of 3,200
  steps of ``tanh([B, hidden] @ [hidden, 3 hidden])`` with B the rows of one minibatch."""
  import jax
  import jax.numpy as jnp

  rows, h = args.tasks // args.minibatches, args.hidden

  @jax.jit
  def loop(w, x):
    return jax.lax.scan(lambda x, _: (jnp.tanh(x @ w)[:, :h], None), x, None, length=3200)[0]

  w = 0.1 * jax.random.normal(jax.random.key(0), (h, 3 * h))
  x = jax.random.normal(jax.random.key(1), (rows, h))
  loop(w, x).block_until_ready()
  best = math.inf
  for _ in range(5):
    start = time.perf_counter()
    loop(w, x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 3200 * rows * h * 3 * h * 2 / best / 1e9


def bench_torch(args) -> float:
  import gymnasium as gym
  import torch
  from torch import nn

  torch.set_num_threads(args.torch_threads)
  k, n = args.arms, args.pulls

  class Bandit(gym.Env):
    def __init__(self):
      self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
      self.action_space = gym.spaces.Discrete(k)

    def reset(self, *, seed=None, options=None):
      super().reset(seed=seed)
      self.means = self.np_random.random(k)
      return np.ones(1, np.float32), {}

    def step(self, action):  # one pull is one episode; the trial keeps the task
      reward = float(self.np_random.random() < self.means[action])
      return np.ones(1, np.float32), reward, False, False, {}

  vec = gym.vector.SyncVectorEnv([Bandit for _ in range(args.tasks)])
  in_dim = 1 + k + 2
  gru = nn.GRUCell(in_dim, args.hidden)
  pi, vf = nn.Linear(args.hidden, k), nn.Linear(args.hidden, 1)
  params = [*gru.parameters(), *pi.parameters(), *vf.parameters()]
  optimizer = torch.optim.Adam(params, lr=1e-3, eps=1e-5)

  def replay(inputs):  # [B, T, in] -> logits [B, T, k], values [B, T]
    h = torch.zeros(inputs.shape[0], args.hidden)
    logits, values = [], []
    for t in range(inputs.shape[1]):
      h = gru(inputs[:, t], h)
      logits.append(pi(h))
      values.append(vf(h)[:, 0])
    return torch.stack(logits, 1), torch.stack(values, 1)

  def one_iteration():
    obs, _ = vec.reset()
    h = torch.zeros(args.tasks, args.hidden)
    prev_a = torch.zeros(args.tasks, dtype=torch.long)
    prev_r, prev_d = torch.zeros(args.tasks), torch.zeros(args.tasks)
    xs, acts, logps, vals, rews = [], [], [], [], []
    with torch.no_grad():
      for _ in range(n):
        x = torch.cat([torch.as_tensor(obs), nn.functional.one_hot(prev_a, k).float(),
                       prev_r[:, None], prev_d[:, None]], 1)
        h = gru(x, h)
        dist = torch.distributions.Categorical(logits=pi(h))
        a = dist.sample()
        obs, r, _, _, _ = vec.step(a.numpy())
        xs.append(x)
        acts.append(a)
        logps.append(dist.log_prob(a))
        vals.append(vf(h)[:, 0])
        rews.append(torch.as_tensor(r, dtype=torch.float32))
        prev_a, prev_r, prev_d = a, rews[-1], torch.ones(args.tasks)
    x, a, old_logp = torch.stack(xs, 1), torch.stack(acts, 1), torch.stack(logps, 1)
    v, r = torch.stack(vals, 1), torch.stack(rews, 1)
    adv = torch.zeros_like(r)
    running = torch.zeros(args.tasks)
    for t in reversed(range(n)):
      next_v = v[:, t + 1] if t + 1 < n else torch.zeros(args.tasks)
      delta = r[:, t] + next_v - v[:, t]
      running = delta + 0.3 * running
      adv[:, t] = running
    ret = adv + v
    size = args.tasks // args.minibatches
    for _ in range(args.epochs):
      order = torch.randperm(args.tasks)
      for i in range(args.minibatches):
        idx = order[i * size:(i + 1) * size]
        logits, values = replay(x[idx])
        logp_all = torch.log_softmax(logits, -1)
        logp = logp_all.gather(-1, a[idx][..., None])[..., 0]
        mb_adv = (adv[idx] - adv[idx].mean()) / (adv[idx].std() + 1e-8)
        ratio = torch.exp(logp - old_logp[idx])
        policy = -torch.min(ratio * mb_adv, ratio.clamp(0.8, 1.2) * mb_adv).mean()
        value = 0.5 * ((values - ret[idx]) ** 2).mean()
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
        loss = policy + 0.5 * value - 0.01 * entropy
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        optimizer.step()

  one_iteration()  # warm-up
  steps, start = 0, time.perf_counter()
  while time.perf_counter() - start < args.seconds:
    one_iteration()
    steps += 1
  return steps * args.tasks * n / (time.perf_counter() - start)


def matmul_flops(args) -> float:
  """Multiply-add FLOPs of one PPO step's matmuls: GRU input and recurrent weights and the
  policy and value heads, per (trial, time step): forward once in the rollout, and forward plus
  backward (twice the forward: the weights' and the hidden state's gradients) in every epoch."""
  in_dim, h = 1 + args.arms + 2, args.hidden
  forward = 2 * (in_dim * 3 * h + h * 3 * h + h * (args.arms + 1))
  rows = args.tasks * args.pulls
  return rows * forward * (1 + 3 * args.epochs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arms", type=int, default=5)
  parser.add_argument("--pulls", type=int, default=10)
  parser.add_argument("--tasks", type=int, default=128)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--minibatches", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per side")
  parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
  parser.add_argument("--devices", type=int, default=1,
                      help="devices the metajax step is split over (on a CPU: host devices)")
  args = parser.parse_args()
  if args.devices < 1:
    parser.error(f"--devices must be >= 1, got {args.devices}")
  if args.tasks % (args.minibatches * args.devices):
    parser.error(f"--tasks {args.tasks} must be a multiple of --minibatches x --devices = "
                 f"{args.minibatches * args.devices} (each minibatch splits evenly over the "
                 "devices)")
  if args.devices > 1 and "host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}")
  load_before = os.getloadavg()[0]
  jax_rate = bench_jax(args)
  ceiling = matmul_ceiling(args)
  torch_rate = bench_torch(args)
  flops = matmul_flops(args)
  per_env_step = flops / (args.tasks * args.pulls)
  print(f"k={args.arms} n={args.pulls} tasks={args.tasks} hidden={args.hidden} "
        f"epochs={args.epochs} minibatches={args.minibatches} devices={args.devices} "
        f"torch_threads={args.torch_threads}; matmul work {flops / 1e9:.2f} GFLOP per PPO step")
  print(f"metajax (jit):          {jax_rate:12,.0f} env steps/s "
        f"({jax_rate * per_env_step / 1e9:.0f} GFLOP/s of matmul work; "
        f"{args.jax_cores:.2f} cores busy)")
  print(f"PyTorch + gymnasium:    {torch_rate:12,.0f} env steps/s "
        f"({torch_rate * per_env_step / 1e9:.0f} GFLOP/s of matmul work)")
  print(f"one device's ceiling for the recurrent matmul alone ([{args.tasks // args.minibatches}, "
        f"{args.hidden}] @ [{args.hidden}, {3 * args.hidden}] in a scan): {ceiling:.0f} GFLOP/s")
  print(f"ratio {jax_rate / torch_rate:.1f}x; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
  main()
