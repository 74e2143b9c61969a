"""Model adapters: NNX, Linen and plain functions give the same pure interface."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import metajax


class NNXNet(nnx.Module):
  def __init__(self, rngs):
    self.body = nnx.Linear(4, 8, rngs=rngs)
    self.norm = nnx.BatchNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.norm(self.body(x))))


class LinenNet(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(8)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dense(3)(jax.nn.relu(x))


X = jax.random.normal(jax.random.key(0), (6, 4)) * 3.0 + 1.0


def test_nnx_adapter_splits_params_from_batch_stats():
  model = metajax.from_nnx(NNXNet(nnx.Rngs(0)))
  assert set(model.params) == {"body", "norm", "head"}
  assert set(model.state["norm"]) == {"mean", "var"}
  _, new_state = model.apply(model.params, model.state, X, train=True)
  # Training mode normalises with batch statistics and updates the running averages.
  assert not np.allclose(new_state["norm"]["mean"], model.state["norm"]["mean"])


def test_transductive_batch_norm_uses_batch_statistics():
  model = metajax.from_nnx(NNXNet(nnx.Rngs(0)))
  hidden = lambda p, s, x, train: model.apply(
      {**p, "head": {"kernel": jnp.eye(8, 3), "bias": jnp.zeros(3)}}, s, x, train=train)[0]
  params = {**model.params, "body": {"kernel": jnp.eye(4, 8), "bias": jnp.zeros(8)}}
  out_train = hidden(params, model.state, X, True)
  out_eval = hidden(params, model.state, X, False)
  relu_of_normalised = jax.nn.relu((X[:, :3] - X[:, :3].mean(0)) / jnp.sqrt(X[:, :3].var(0) + 1e-5))
  np.testing.assert_allclose(out_train, relu_of_normalised, rtol=1e-4, atol=1e-4)
  assert not np.allclose(out_train, out_eval)


def test_linen_adapter_with_batch_norm():
  model = metajax.from_linen(LinenNet(), X, jax.random.key(0), train_kwarg="train")
  assert "batch_stats" in model.state
  out, new_state = model.apply(model.params, model.state, X, train=True)
  assert out.shape == (6, 3)
  assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)
  out_eval, same_state = model.apply(model.params, model.state, X, train=False)
  assert same_state is model.state and out_eval.shape == (6, 3)


def test_every_adapter_meta_trains_with_maml():
  from _tiny import classification_tasks

  fn_params = {"w": jax.random.normal(jax.random.key(1), (4, 3))}
  models = {
      "nnx": metajax.from_nnx(NNXNet(nnx.Rngs(0))),
      "linen": metajax.from_linen(LinenNet(), X, jax.random.key(0), train_kwarg="train"),
      "function": metajax.from_function(lambda p, x: x @ p["w"], fn_params),
  }
  tasks = classification_tasks(batch=4)
  for name, model in models.items():
    learner = metajax.maml(model, inner_lr=0.1, steps=1)
    optimizer = optax.adam(1e-2)
    meta_step = metajax.make_meta_step(learner, optimizer)
    state = metajax.init_meta_state(learner, optimizer)
    losses = []
    for i in range(15):
      state, metrics = meta_step(state, tasks, jax.random.key(i))
      losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0], (name, losses)
