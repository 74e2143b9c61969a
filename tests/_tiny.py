"""Tiny models and tasks shared by the core tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import metajax

WAYS, SHOTS, QUERIES, FEATURES = 3, 2, 3, 4


def linear_regression_model(features: int = FEATURES, key: int = 0) -> metajax.Model:
  """y = x @ w: with MSE its task loss is exactly quadratic in w."""
  w = jax.random.normal(jax.random.key(key), (features, 1)) * 0.5
  return metajax.from_function(lambda p, x: x @ p["w"], {"w": w})


def regression_task(key: int = 1, features: int = FEATURES, n: int = 6) -> metajax.Task:
  k = jax.random.split(jax.random.key(key), 4)
  return metajax.Task(
      jax.random.normal(k[0], (n, features)), jax.random.normal(k[1], (n, 1)),
      jax.random.normal(k[2], (n, features)), jax.random.normal(k[3], (n, 1)))


def tanh_classifier(key: int = 0, hidden: int = 8, inputs: int = FEATURES) -> metajax.Model:
  """A smooth two-layer classifier (tanh keeps finite differences accurate)."""
  k1, k2 = jax.random.split(jax.random.key(key))
  params = {"body": {"w": jax.random.normal(k1, (inputs, hidden)) * 0.5,
                     "b": jnp.zeros(hidden)},
            "head": {"w": jax.random.normal(k2, (hidden, WAYS)) * 0.5, "b": jnp.zeros(WAYS)}}

  def apply(p, x):
    h = jnp.tanh(x @ p["body"]["w"] + p["body"]["b"])
    return h @ p["head"]["w"] + p["head"]["b"]

  return metajax.from_function(apply, params)


def classification_tasks(key: int = 2, batch: int = 4) -> metajax.Task:
  """A batch of ``batch`` 3-way tasks on Gaussian class clusters."""
  rng = np.random.default_rng(key)
  tasks = []
  for _ in range(batch):
    centres = rng.normal(size=(WAYS, FEATURES)) * 2.0
    sy = np.repeat(np.arange(WAYS), SHOTS)
    qy = np.repeat(np.arange(WAYS), QUERIES)
    sx = centres[sy] + rng.normal(size=(len(sy), FEATURES)) * 0.3
    qx = centres[qy] + rng.normal(size=(len(qy), FEATURES)) * 0.3
    tasks.append((sx, sy, qx, qy))
  sx, sy, qx, qy = (np.stack(a) for a in zip(*tasks))
  return metajax.Task(sx.astype(np.float32), sy.astype(np.int32), qx.astype(np.float32),
                      qy.astype(np.int32))


def first(tasks: metajax.Task) -> metajax.Task:
  return jax.tree.map(lambda x: jnp.asarray(x[0]), tasks)


def bn_classifier(key: int = 0, hidden: int = 6, inputs: int = FEATURES) -> metajax.Model:
  """Linear -> BatchNorm -> tanh -> Linear, a Flax NNX classifier with BatchNorm state.

  Its BatchNorm (momentum 0.9, epsilon 1e-5, as Conv-4's) takes ``mask=`` like Conv-4's.
  """
  from flax import nnx

  class BNClassifier(nnx.Module):
    def __init__(self, rngs):
      self.body = nnx.Linear(inputs, hidden, rngs=rngs)
      self.norm = nnx.BatchNorm(hidden, momentum=0.9, epsilon=1e-5, rngs=rngs)
      self.head = nnx.Linear(hidden, WAYS, rngs=rngs)

    def __call__(self, x, *, mask=None):
      h = self.body(x)
      row_mask = None if mask is None else jnp.broadcast_to(mask[:, None], h.shape)
      return self.head(jnp.tanh(self.norm(h, mask=row_mask)))

  return metajax.from_nnx(BNClassifier(nnx.Rngs(key)))
