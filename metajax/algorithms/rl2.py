"""RL²: a recurrent policy that learns to learn, trained by PPO over trials of tasks."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from metajax.algorithms.ppo import gae_advantages, ppo_loss
from metajax.core._checks import check_positive, check_steps
from metajax.core.meta_step import TASK_AXIS, MetaTrainState
from metajax.core.types import Array, PRNGKey, PyTree
from metajax.envs.core import Discrete, Environment, check_env, sample_tasks


class Trial(NamedTuple):
  """One recorded trial (time-major, ``[T, ...]``).

  Attributes:
    inputs: ``[T, obs_dim + actions + 2]`` what the GRU saw at each step: the observation, the
      one-hot previous action, the previous reward and the previous done flag.
    actions: ``[T]`` int actions taken.
    log_probs: ``[T]`` their log-probabilities under the policy that acted.
    values: ``[T]`` the value predictions.
    rewards: ``[T]`` rewards received.
    expected_rewards: ``[T]`` the environment's expected reward of each step given everything
      before it, ``info["expected_reward"]`` (a copy of ``rewards`` where the environment
      does not report one).

  Example:
    >>> import jax, metajax.envs as envs
    >>> env = envs.bernoulli_bandit(arms=2, pulls=5)
    >>> learner = rl2(env, episodes=5, hidden=8, tasks_per_step=4, minibatches=2)
    >>> params = learner.init(jax.random.key(0)).params
    >>> trial = jax.jit(learner.rollout)(params, env.sample_task(jax.random.key(1)),
    ...                                  jax.random.key(2))
    >>> trial.inputs.shape, trial.rewards.shape
    ((5, 5), (5,))

  References:
    Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning", 2016,
    Section 2.2 (the policy's inputs). https://arxiv.org/abs/1611.02779
  """

  inputs: Array
  actions: Array
  log_probs: Array
  values: Array
  rewards: Array
  expected_rewards: Array


class RL2(NamedTuple):
  """RL² as pure functions.

  Attributes:
    init: ``init(key) -> MetaTrainState`` (step, params, optimizer state; the
      trainer's checkpointer saves it as it is).
    train_step: ``train_step(state, key) -> (state, metrics)``, jitted (state
      donated): sample ``tasks_per_step`` tasks, roll out one trial on each (vmap
      over tasks, ``lax.scan`` over time), then PPO epochs over the trials. With a
      ``mesh``, the trials and every minibatch are split over its ``"tasks"`` axis.
    rollout: ``rollout(params, task, key, greedy=False) -> Trial``, one trial on one
      task; ``greedy=True`` takes the most probable action at every step instead of
      sampling one.
    evaluate: ``evaluate(params, key, tasks=1000, *, greedy=False) -> total reward per
      trial`` (``[tasks]``); ``tasks`` is a count of fresh tasks or a task batch (to
      score RL² on the same tasks as a baseline); ``greedy`` as in ``rollout``.
    check_task: ``check_task(task)`` probes the environment on concrete values.
    trial_length: steps per trial (``episodes * env.episode_length``).
    name: ``"rl2"``.

  Example:
    >>> import jax, metajax.envs as envs
    >>> learner = rl2(envs.bernoulli_bandit(arms=2, pulls=5), episodes=5, hidden=8,
    ...               tasks_per_step=4, minibatches=2)
    >>> learner.name, learner.trial_length
    ('rl2', 5)

  References:
    Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel, "RL²: Fast Reinforcement
    Learning via Slow Reinforcement Learning", 2016. https://arxiv.org/abs/1611.02779
  """

  init: Callable[[PRNGKey], MetaTrainState]
  train_step: Callable[[MetaTrainState, PRNGKey], tuple[MetaTrainState, dict[str, Array]]]
  rollout: Callable[[PyTree, PyTree, PRNGKey], Trial]
  evaluate: Callable[..., Array]
  check_task: Callable[[PyTree], None]
  trial_length: int
  name: str


def gru_init(key: PRNGKey, input_dim: int, hidden: int,
             chrono: int | None = None) -> dict[str, Array]:
  """Parameters of a GRU cell (Cho et al., 2014), gates ordered (reset, update, new).

  ``chrono=T``: the update gate's biases are drawn as ``log(U[1, T - 1])`` (chrono
  initialization, Tallec & Ollivier, "Can recurrent neural networks warp time?", ICLR 2018),
  so each unit starts keeping its state over a time scale spread between 2 and ``T`` steps
  instead of halving it every step; ``None``: zero biases.
  """
  k_x, k_h, k_z = jax.random.split(key, 3)
  scale_x = 1.0 / math.sqrt(input_dim)
  b = jnp.zeros((3 * hidden,))
  if chrono is not None:
    b = b.at[hidden:2 * hidden].set(
        jnp.log(jax.random.uniform(k_z, (hidden,), minval=1.0, maxval=max(chrono - 1, 1))))
  return {
      "w_x": jax.random.uniform(k_x, (input_dim, 3 * hidden), minval=-scale_x, maxval=scale_x),
      "w_h": jax.nn.initializers.orthogonal()(k_h, (hidden, 3 * hidden)),
      "b": b,
      "b_hn": jnp.zeros((hidden,)),
  }


def gru_cell(params: dict[str, Array], h: Array, x: Array) -> Array:
  """One GRU step: ``h' = (1 - z) n + z h``; ``h [..., hidden]``, ``x [..., input_dim]``."""
  return _gru_forward(params["w_x"], params["w_h"], params["b"], params["b_hn"], h, x)[0]


def _gru_forward(w_x: Array, w_h: Array, b: Array, b_hn: Array, h: Array, x: Array):
  """The GRU gates and new state, and the residuals :func:`_gru_backward` needs."""
  hidden = h.shape[-1]
  gx = x @ w_x + b
  gh = h @ w_h
  r = jax.nn.sigmoid(gx[..., :hidden] + gh[..., :hidden])
  z = jax.nn.sigmoid(gx[..., hidden:2 * hidden] + gh[..., hidden:2 * hidden])
  hn = gh[..., 2 * hidden:] + b_hn
  n = jnp.tanh(gx[..., 2 * hidden:] + r * hn)
  return (1.0 - z) * n + z * h, (w_x, w_h, h, x, r, z, n, hn)


@jax.custom_vjp
def _gru_cell_batch(w_x: Array, w_h: Array, b: Array, b_hn: Array, h: Array, x: Array) -> Array:
  """:func:`gru_cell` on a batch, ``h [B, hidden]``, ``x [B, input_dim]``, with a hand-written
  backward pass.

  The gradient is the one ``jax.grad`` derives from :func:`gru_cell`, written as one
  elementwise pass and four matmuls: XLA:CPU otherwise splits the autodiff gate math into
  several fusions per time step that recompute the gates, and RL²'s replay runs this backward
  pass once per time step of every PPO minibatch (1.9x faster there, 2026-12-07).
  Reverse mode only: ``jax.jvp`` through it is refused, as for any ``jax.custom_vjp``.
  """
  return _gru_forward(w_x, w_h, b, b_hn, h, x)[0]


def _gru_backward(residuals, g):
  w_x, w_h, h, x, r, z, n, hn = residuals
  d_n = g * (1.0 - z) * (1.0 - n * n)          # through tanh
  d_z = g * (h - n) * z * (1.0 - z)            # through the update gate's sigmoid
  d_r = d_n * hn * r * (1.0 - r)               # through the reset gate's sigmoid
  d_gx = jnp.concatenate([d_r, d_z, d_n], axis=-1)
  d_hn = d_n * r
  d_gh = jnp.concatenate([d_r, d_z, d_hn], axis=-1)
  return (x.T @ d_gx, h.T @ d_gh, d_gx.sum(0), d_hn.sum(0), g * z + d_gh @ w_h.T,
          d_gx @ w_x.T)


_gru_cell_batch.defvjp(_gru_forward, _gru_backward)


def _check_mesh(mesh: jax.sharding.Mesh | None, tasks_per_step: int, minibatches: int) -> int:
  """The number of devices on ``mesh``'s ``"tasks"`` axis (1 without a mesh); raises unless
  every minibatch splits evenly over them."""
  if mesh is None:
    return 1
  if not isinstance(mesh, jax.sharding.Mesh) or TASK_AXIS not in mesh.shape:
    raise ValueError(
        f"mesh={mesh!r} must be a jax.sharding.Mesh with a {TASK_AXIS!r} axis (RL² splits the "
        f"trials over it), e.g. jax.sharding.Mesh(jax.devices(), ({TASK_AXIS!r},)); or None "
        "for one device")
  others = {name: n for name, n in mesh.shape.items() if name != TASK_AXIS and n > 1}
  if others:
    raise ValueError(
        f"mesh axes {others} besides {TASK_AXIS!r} have more than one device; RL² replicates "
        f"the parameters over them, so they would only repeat the work. Put every device on "
        f"{TASK_AXIS!r}, e.g. jax.sharding.Mesh(devices, ({TASK_AXIS!r},))")
  shards = mesh.shape[TASK_AXIS]
  size = tasks_per_step // minibatches
  if size % shards:
    raise ValueError(
        f"a minibatch of tasks_per_step / minibatches = {tasks_per_step} / {minibatches} = {size} "
        f"trials does not split evenly over the mesh's {shards} {TASK_AXIS!r} devices; make "
        f"tasks_per_step a multiple of minibatches x devices = {minibatches * shards}")
  return shards


def _check_expected_reward(env: Environment) -> None:
  """Raises unless ``env.step`` reports a scalar ``info["expected_reward"]`` (checked on shapes;
  nothing runs)."""
  def one_step(key):
    task = env.sample_task(key)
    _, state = env.reset(key, task)
    return env.step(key, state, jnp.zeros((), jnp.int32), task)[4]

  info = jax.eval_shape(one_step, jax.random.key(0))
  found = info.get("expected_reward") if isinstance(info, dict) else None
  if found is None or found.shape != ():
    raise ValueError(
        f"expected_rewards=True needs {env.name}'s step to report info['expected_reward'], the "
        f"scalar expected reward of the step, but its info is {info!r}; add it to the "
        "environment's step (bernoulli_bandit and tabular_mdp report it) or leave "
        "expected_rewards=False."
    )


def rl2(env: Environment, *, episodes: int, hidden: int = 128, tasks_per_step: int = 64,
        learning_rate: float = 3e-4, gamma: float = 0.99, gae_lambda: float = 0.95,
        clip_eps: float = 0.2, value_coef: float = 0.5, entropy_coef: float = 0.01,
        epochs: int = 4, minibatches: int = 4, max_grad_norm: float = 0.5,
        reward_scale: float = 1.0, time_input: bool = False,
        learning_rate_decay_steps: int | None = None, learning_rate_decay_begin: int = 0,
        expected_rewards: bool = False, previous_observation: bool = False,
        embedding: int | None = None, head_hidden: int | None = None,
        chrono_init: bool = False, reward_prediction_coef: float = 0.0,
        mesh: jax.sharding.Mesh | None = None) -> RL2:
  """RL² (Duan et al., 2016): a GRU policy whose hidden state is the fast learner.

  At each step the GRU sees ``(observation, one-hot previous action, previous
  reward, previous done flag)``; its hidden state starts at zero at the beginning
  of a trial and persists across the ``episodes`` episodes of that trial (the
  environment is reset at each episode boundary, the memory is not). The slow
  learner is PPO with GAE over whole trials: the return is the trial's total
  reward, bootstrapped nowhere inside the trial, and each PPO epoch re-runs the
  GRU over the recorded inputs (full backpropagation through time).

  Args:
    env: a discrete-action :class:`metajax.envs.Environment`.
    episodes: episodes per trial (``n`` pulls for a bandit).
    hidden: GRU width (256 in the paper's bandit experiments).
    tasks_per_step: trials (tasks) per training step.
    learning_rate: Adam step size.
    gamma: discount within a trial.
    gae_lambda: GAE lambda.
    clip_eps: PPO ratio clip.
    value_coef: value-loss weight.
    entropy_coef: entropy-bonus weight.
    epochs: PPO epochs per training step.
    minibatches: minibatches per epoch (``tasks_per_step`` must be divisible).
    max_grad_norm: global gradient-norm clip.
    reward_scale: rewards are multiplied by it for the value targets and advantages only
      (keep value targets near unit scale: a tabular-MDP trial returns ~100, and an unscaled
      value loss then eats the clipped gradient norm); metrics report unscaled rewards.
    time_input: also feed the GRU the fraction of the trial elapsed, ``t / trial_length``
      (not in the paper, whose GRU must count the steps itself; a finite-horizon strategy
      such as the Bayes-optimal one depends on the steps left).
    learning_rate_decay_steps: decay the learning rate linearly from ``learning_rate`` to zero
      over this many training (PPO) steps, then keep it at zero (PPO's annealing, Schulman et
      al. 2017); ``None`` keeps it constant. Set it to the run's ``meta_steps``.
    learning_rate_decay_begin: training steps at the constant ``learning_rate`` before the
      linear decay starts (needs ``learning_rate_decay_steps``; the rate reaches zero at step
      ``learning_rate_decay_begin + learning_rate_decay_steps``). Up to that step a run takes
      the same updates as one with a constant rate.
    expected_rewards: compute the advantages and value targets from the environment's
      expected reward of each step, ``info["expected_reward"]`` (a bandit arm's mean, an
      MDP's ``r(s, a)``), instead of the sampled reward; the GRU still sees the sampled
      reward. Not in the paper. The policy gradient stays unbiased, because the expected
      reward is the sampled one's conditional mean given everything the score terms of
      that step and the steps before it depend on, and it drops the reward noise from the
      returns (the noise of the policy's own actions remains). Training-time privileged
      information: the policy never sees it.
    previous_observation: also feed the GRU the observation at which the previous action was
      taken (zeros at the start of a trial), so each input holds a whole transition
      ``(s, a, r, s')`` and the GRU need not carry ``s`` over a step to know which
      state-action pair a reward belongs to. Not in the paper, whose input is
      ``(s', a, r, d)``; VariBAD's encoder (Zintgraf et al., 2020) reads transitions so.
    embedding: pass each input through a dense ReLU layer of this width before the GRU
      (``relu(x W + b)``, re-applied with the current weights when PPO replays a trial), so
      the GRU's gates read learned features of the input, such as the conjunction of a state
      and an action, rather than the raw one-hots; ``None``: the GRU reads the input itself.
    head_hidden: give the policy and the value head each a dense ReLU layer of this width
      between the GRU state and their outputs (``relu(h W1 + b1) W2 + b2``), so a head can
      gate what the GRU stores by what it also holds, such as picking the rewards stored for
      the current state; ``None``: linear heads, as the paper.
    chrono_init: draw the GRU's update-gate biases as ``log(U[1, trial_length - 1])``
      (Tallec & Ollivier, ICLR 2018) rather than zero, so at the start of training its units
      keep what they hold over time scales up to a trial instead of halving it each step.
    reward_prediction_coef: weight of an auxiliary loss (not in the paper; the reward
      prediction task of UNREAL, Jaderberg et al. 2017, and the reward decoder of VariBAD,
      Zintgraf et al. 2020): a linear head on what the policy's output layer reads predicts,
      at each step, the reward of every action; ``coef * mean((pred[a_t] - r_t)^2) / 2`` over
      the taken actions joins PPO's loss (``r_t`` the expected reward with
      ``expected_rewards=True``). Its minimiser is the posterior-mean reward of the action in
      the current state given the trial so far, so the GRU is pushed to keep, per state, what
      each action paid. Training only: acting and evaluation do not use the head. ``0``: off
      (no head, no extra parameters).
    mesh: split each training step over the devices of this mesh's ``"tasks"`` axis (data
      parallelism; parameters and optimizer state replicated): each device rolls out
      ``tasks_per_step / D`` of the trials, the trials are then gathered on every device, and
      each PPO minibatch is split in ``D`` equal parts whose gradients are averaged. The
      tasks, rollout keys and minibatches are those of the one-device step, so each step's
      result is the one-device result up to float summation order. Over hundreds of steps
      those differences grow until a sampled action differs, and from then on the two runs
      are different samples of the same training. ``None``: one device.

  Returns:
    An :class:`RL2`.

  Raises:
    ValueError: a non-discrete action space; ``embedding`` or ``head_hidden`` below 1; a
      negative or non-finite ``reward_prediction_coef``; ``tasks_per_step`` not divisible by
      ``minibatches``; ``expected_rewards=True`` with an environment whose ``step`` reports
      no ``info["expected_reward"]``; ``learning_rate_decay_begin`` > 0 without
      ``learning_rate_decay_steps``; a ``mesh`` without a ``"tasks"`` axis, with another axis
      of more than one device, or whose ``"tasks"`` size does not divide a minibatch
      (``tasks_per_step / minibatches``).
    TypeError: ``time_input``, ``expected_rewards``, ``previous_observation`` or
      ``chrono_init`` not a bool.

  Example:
    >>> import jax, metajax.envs as envs
    >>> learner = rl2(envs.bernoulli_bandit(arms=2, pulls=5), episodes=5, hidden=8,
    ...               tasks_per_step=4, minibatches=2)
    >>> state = learner.init(jax.random.key(0))
    >>> learner.trial_length
    5
    >>> # state, metrics = learner.train_step(state, jax.random.key(1))  (compiled once)

  References:
    Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel, "RL²: Fast Reinforcement
    Learning via Slow Reinforcement Learning", 2016. https://arxiv.org/abs/1611.02779
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017.
  """
  if not isinstance(env.action_space, Discrete):
    raise ValueError(
        f"rl2 needs a Discrete action space, got {env.action_space} from {env.name}; "
        "discretise the actions or use maml_rl for continuous control."
    )
  episodes = check_steps(episodes, "episodes", minimum=1)
  hidden = check_steps(hidden, "hidden", minimum=1)
  tasks_per_step = check_steps(tasks_per_step, "tasks_per_step", minimum=1)
  epochs = check_steps(epochs, "epochs", minimum=1)
  minibatches = check_steps(minibatches, "minibatches", minimum=1)
  if tasks_per_step % minibatches:
    raise ValueError(
        f"tasks_per_step={tasks_per_step} is not divisible by minibatches={minibatches}; "
        "PPO splits the trials of a step into equal minibatches, so pick a divisor."
    )
  check_positive(learning_rate, "learning_rate")
  shards = _check_mesh(mesh, tasks_per_step, minibatches)
  if not isinstance(expected_rewards, bool):
    raise TypeError(f"expected_rewards={expected_rewards!r} must be True or False")
  if expected_rewards:
    _check_expected_reward(env)
  n_actions = env.action_space.n
  obs_dim = int(math.prod(env.observation_space.shape))
  if not isinstance(time_input, bool):
    raise TypeError(f"time_input={time_input!r} must be True or False")
  if not isinstance(previous_observation, bool):
    raise TypeError(f"previous_observation={previous_observation!r} must be True or False")
  input_dim = obs_dim + n_actions + 2 + int(time_input) + obs_dim * int(previous_observation)
  if embedding is not None:
    embedding = check_steps(embedding, "embedding", minimum=1)
  if head_hidden is not None:
    head_hidden = check_steps(head_hidden, "head_hidden", minimum=1)
  if not isinstance(chrono_init, bool):
    raise TypeError(f"chrono_init={chrono_init!r} must be True or False")
  if not (isinstance(reward_prediction_coef, int | float) and not isinstance(
      reward_prediction_coef, bool) and 0 <= reward_prediction_coef < math.inf):
    raise ValueError(f"reward_prediction_coef={reward_prediction_coef!r} must be a finite "
                     "number >= 0 (0 turns the auxiliary reward prediction off), e.g. 0.1")
  predict_rewards = reward_prediction_coef > 0
  head_in = hidden if head_hidden is None else head_hidden
  trial_length = episodes * env.episode_length
  rate = learning_rate
  begin = check_steps(learning_rate_decay_begin, "learning_rate_decay_begin")
  if begin and learning_rate_decay_steps is None:
    raise ValueError(f"learning_rate_decay_begin={begin} needs learning_rate_decay_steps (the "
                     "steps over which the rate then falls to zero), e.g. "
                     f"learning_rate_decay_steps={max(begin // 6, 1)}")
  if learning_rate_decay_steps is not None:
    decay = check_steps(learning_rate_decay_steps, "learning_rate_decay_steps", minimum=1)
    # The schedule counts optimizer updates: epochs x minibatches per training step.
    updates_per_step = epochs * minibatches
    rate = optax.linear_schedule(learning_rate, 0.0, decay * updates_per_step,
                                 transition_begin=begin * updates_per_step)
  optimizer = optax.chain(optax.clip_by_global_norm(max_grad_norm),
                          optax.adam(rate, eps=1e-5))

  def init_params(key):
    # split(key, n)[:3] equals split(key, 3): the options' weights leave the others as they
    # were before the options existed.
    k_gru, k_pi, k_v, k_embed, k_pi_hidden, k_v_hidden, k_r = jax.random.split(key, 7)
    relu_init = jax.nn.initializers.orthogonal(jnp.sqrt(2.0))
    params = {
        "gru": gru_init(k_gru, input_dim if embedding is None else embedding, hidden,
                        chrono=trial_length if chrono_init else None),
        "policy": {"w": 0.01 * jax.nn.initializers.orthogonal()(k_pi, (head_in, n_actions)),
                   "b": jnp.zeros((n_actions,))},
        "value": {"w": jax.nn.initializers.orthogonal()(k_v, (head_in, 1)),
                  "b": jnp.zeros((1,))},
    }
    if embedding is not None:
      params["embed"] = {"w": relu_init(k_embed, (input_dim, embedding)),
                         "b": jnp.zeros((embedding,))}
    if head_hidden is not None:
      for name, k in (("policy_hidden", k_pi_hidden), ("value_hidden", k_v_hidden)):
        params[name] = {"w": relu_init(k, (hidden, head_hidden)), "b": jnp.zeros((head_hidden,))}
    if predict_rewards:
      params["reward"] = {"w": jax.nn.initializers.orthogonal()(k_r, (head_in, n_actions)),
                          "b": jnp.zeros((n_actions,))}
    return params

  def embed(params, x):
    if embedding is None:
      return x
    return jax.nn.relu(x @ params["embed"]["w"] + params["embed"]["b"])

  def heads(params, h):
    """``(logits, value, predicted reward of each action or None)`` of GRU states ``h``."""
    h_pi = h_v = h
    if head_hidden is not None:
      h_pi = jax.nn.relu(h @ params["policy_hidden"]["w"] + params["policy_hidden"]["b"])
      h_v = jax.nn.relu(h @ params["value_hidden"]["w"] + params["value_hidden"]["b"])
    logits = h_pi @ params["policy"]["w"] + params["policy"]["b"]
    value = (h_v @ params["value"]["w"] + params["value"]["b"])[..., 0]
    predicted = (h_pi @ params["reward"]["w"] + params["reward"]["b"]) if predict_rewards else None
    return logits, value, predicted

  def rollout(params, task, key, greedy=False):
    k_reset, k_steps = jax.random.split(key)
    obs, env_state = env.reset(k_reset, task)

    def body(carry, step):
      step_key, t = step
      env_state, obs, h, prev_action, prev_reward, prev_done, prev_obs = carry
      k_act, k_env, k_reset = jax.random.split(step_key, 3)
      clock = [(t / trial_length)[None]] if time_input else []
      before = [prev_obs] if previous_observation else []
      obs = jnp.reshape(obs, (obs_dim,)).astype(jnp.float32)
      x = jnp.concatenate([obs, jax.nn.one_hot(prev_action, n_actions),
                           prev_reward[None], prev_done[None], *clock, *before]
                          ).astype(jnp.float32)
      h = gru_cell(params["gru"], h, embed(params, x))
      logits, value, _ = heads(params, h)
      action = (jnp.argmax(logits) if greedy else jax.random.categorical(k_act, logits)
                ).astype(jnp.int32)
      log_prob = jax.nn.log_softmax(logits)[action]
      obs_next, env_state_next, reward, done, info = env.step(k_env, env_state, action, task)
      obs_reset, env_state_reset = env.reset(k_reset, task)
      env_state_next = jax.tree.map(lambda a, b: jnp.where(done, a, b), env_state_reset,
                                    env_state_next)
      obs_next = jnp.where(done, obs_reset, obs_next)
      reward = jnp.asarray(reward, jnp.float32)
      expected = jnp.asarray(info.get("expected_reward", reward), jnp.float32)
      carry = (env_state_next, obs_next, h, action, reward, jnp.asarray(done, jnp.float32),
               obs)
      return carry, (x, action, log_prob, value, reward, expected)

    carry = (env_state, obs, jnp.zeros((hidden,)), jnp.zeros((), jnp.int32),
             jnp.zeros(()), jnp.zeros(()), jnp.zeros((obs_dim,), jnp.float32))
    _, record = jax.lax.scan(body, carry, (jax.random.split(k_steps, trial_length),
                                           jnp.arange(trial_length, dtype=jnp.float32)))
    return Trial(*record)

  def replay(params, inputs):
    """Re-runs the GRU over recorded trials ``inputs [B, T, ...]``: ``(log_softmax logits,
    values, predicted rewards or None)``, ``[B, T, ...]``; the whole batch steps together
    through :func:`_gru_cell_batch`."""
    gru = params["gru"]

    def body(h, x):
      h = _gru_cell_batch(gru["w_x"], gru["w_h"], gru["b"], gru["b_hn"], h, x)
      return h, heads(params, h)

    h0 = jnp.zeros((inputs.shape[0], hidden), inputs.dtype)
    _, out = jax.lax.scan(body, h0, jnp.swapaxes(embed(params, inputs), 0, 1))
    logits, values, predicted = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)
    return jax.nn.log_softmax(logits), values, predicted

  dones = jnp.zeros((trial_length,)).at[-1].set(1.0)

  def minibatch_loss(params, batch):
    """PPO's loss on one minibatch (or, with a mesh, on this device's part of it); the
    advantages come normalized over the whole minibatch."""
    trials, advantages, returns = batch
    log_probs_all, values, predicted = replay(params, trials.inputs)
    log_probs = jnp.take_along_axis(log_probs_all, trials.actions[..., None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(log_probs_all) * log_probs_all, axis=-1)
    out = ppo_loss(log_probs, trials.log_probs, advantages, values, returns, entropy,
                   clip_eps=clip_eps, value_coef=value_coef, entropy_coef=entropy_coef)
    if not predict_rewards:
      return out.total, (out, None)
    target = trials.expected_rewards if expected_rewards else trials.rewards
    taken = jnp.take_along_axis(predicted, trials.actions[..., None], axis=-1)[..., 0]
    reward_loss = 0.5 * jnp.mean(jnp.square(taken - target))
    return out.total + reward_prediction_coef * reward_loss, (out, reward_loss)

  grad_fn = jax.grad(minibatch_loss, has_aux=True)

  def gather_trials(data):
    # Each device writes its trials at its offset in zeros of the global shape and one psum
    # (a single all-reduce of every array) adds them up. Not one all_gather per array: XLA:CPU
    # may run independent collectives at once, and with host devices sharing a small thread
    # pool, those of one device can take every thread while another device waits for one
    # (a deadlock seen with 2 host devices on 2 cores, 2026-12-07).
    # The int actions travel as float32 (exact below 2**24), so the all-reduce is one op.
    local = jax.tree.leaves(data)[0].shape[0]
    start = jax.lax.axis_index(TASK_AXIS) * local
    placed = jax.tree.map(
        lambda a: jax.lax.dynamic_update_slice_in_dim(
            jnp.zeros((tasks_per_step, *a.shape[1:]), jnp.float32), a.astype(jnp.float32),
            start, axis=0), data)
    return jax.tree.map(lambda a, like: a.astype(like.dtype), jax.lax.psum(placed, TASK_AXIS),
                        data)

  def train_step(state, key):
    key = jax.random.fold_in(key, state.step)
    k_tasks, k_roll, k_perm = jax.random.split(key, 3)
    tasks = sample_tasks(env, k_tasks, tasks_per_step)
    roll_keys = jax.random.split(k_roll, tasks_per_step)
    if mesh is None:
      return ppo_step(state, tasks, roll_keys, k_perm)
    spec = jax.sharding.PartitionSpec
    return jax.shard_map(
        ppo_step, mesh=mesh, in_specs=(spec(), spec(TASK_AXIS), spec(TASK_AXIS), spec()),
        out_specs=spec(), check_vma=False)(state, tasks, roll_keys, k_perm)

  def ppo_step(state, tasks, roll_keys, k_perm):
    """Rollouts, GAE and the PPO epochs; with a mesh, on this device's tasks."""
    trials = jax.vmap(rollout, in_axes=(None, 0, 0))(state.params, tasks, roll_keys)
    advantages, returns = jax.vmap(
        lambda r, v: gae_advantages(reward_scale * r, v, dones, jnp.zeros(()), gamma=gamma,
                                    gae_lambda=gae_lambda)
    )(trials.expected_rewards if expected_rewards else trials.rewards, trials.values)
    data = (trials, advantages, returns)
    if mesh is not None:  # every device gets every trial; each takes its part of a minibatch
      data = gather_trials(data)
      trials = data[0]
    size = tasks_per_step // minibatches

    def epoch(carry, epoch_key):
      params, opt_state = carry
      order = jax.random.permutation(epoch_key, tasks_per_step)
      shuffled = jax.tree.map(lambda a: a[order].reshape(minibatches, size, *a.shape[1:]), data)

      def update(carry, batch):
        params, opt_state = carry
        minibatch, advantages, returns = batch
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        batch = (minibatch, advantages, returns)
        if mesh is not None:
          part = size // shards
          start = jax.lax.axis_index(TASK_AXIS) * part
          batch = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, part), batch)
        grads, out = grad_fn(params, batch)
        if mesh is not None:  # one all-reduce for the gradients and the loss terms together
          flat, unravel = jax.flatten_util.ravel_pytree((grads, out))
          grads, out = unravel(jax.lax.pmean(flat, TASK_AXIS))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), out

      return jax.lax.scan(update, (params, opt_state), shuffled)

    (params, opt_state), (outs, reward_losses) = jax.lax.scan(
        epoch, (state.params, state.opt_state), jax.random.split(k_perm, epochs))
    metrics = {
        "trial_return": jnp.mean(jnp.sum(trials.rewards, axis=-1)),
        "loss": jnp.mean(outs.total), "policy_loss": jnp.mean(outs.policy),
        "value_loss": jnp.mean(outs.value), "entropy": jnp.mean(outs.entropy),
        "approx_kl": jnp.mean(outs.approx_kl), "clip_fraction": jnp.mean(outs.clip_fraction),
    }
    if predict_rewards:  # a key of its own, so the default run's metrics stay as they were
      metrics["reward_prediction_loss"] = jnp.mean(reward_losses)
    return MetaTrainState(state.step + 1, params, opt_state), metrics

  def init(key):
    params = init_params(key)
    return replicate(MetaTrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params)))

  def replicate(state):
    if mesh is None:
      return state
    return jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

  compiled_step = jax.jit(train_step, donate_argnums=0)
  # XLA:CPU runs host devices' programs on one shared thread pool. With a step dispatched
  # before the last one finished, the collectives of two steps could hold every thread while
  # another device's part waits for one (a deadlock seen with 2 host devices on 2 cores,
  # 2026-12-07), so on CPU devices each step is waited for.
  wait = mesh is not None and all(d.platform == "cpu" for d in mesh.devices.flat)

  def step_on_mesh(state, key):
    # A state from a checkpoint or from one device is first copied to every device of the
    # mesh (a no-op for the state a step returns), so the step compiles once.
    out = compiled_step(replicate(state), key)
    return jax.block_until_ready(out) if wait else out

  @functools.partial(jax.jit, static_argnames="greedy")
  def _evaluate(params, key, task_batch, greedy):
    count = jax.tree.leaves(task_batch)[0].shape[0]
    trials = jax.vmap(rollout, in_axes=(None, 0, 0, None))(
        params, task_batch, jax.random.split(key, count), greedy)
    return jnp.sum(trials.rewards, axis=-1)

  def evaluate(params: PyTree, key: PRNGKey, tasks: int | PyTree = 1000, *,
               greedy: bool = False) -> Array:
    k_tasks, k_roll = jax.random.split(key)
    if isinstance(tasks, int):
      tasks = sample_tasks(env, k_tasks, check_steps(tasks, "tasks", minimum=1))
    if not isinstance(greedy, bool):
      raise TypeError(f"greedy={greedy!r} must be True or False")
    return _evaluate(params, k_roll, tasks, greedy)

  def check_task(task: Any) -> None:
    check_env(env, task)

  return RL2(init=init, train_step=compiled_step if mesh is None else step_on_mesh,
             rollout=rollout,
             evaluate=evaluate, check_task=check_task, trial_length=trial_length, name="rl2")
