"""Meta-Dataset support: masked (padded) episodes, the variable-way/shot sampler, streaming.

Masked episodes: every learner in the contract suite either gives the unpadded episode's loss,
accuracy and meta-gradient on the padded one (``supports_masks``) or refuses it in
``check_task``; padding is never silently trained on.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import classification_tasks, first
from test_contract import ALGORITHMS, build

import metajax
from metajax.core.masks import pad_task
from metajax.models.conv4 import conv4_model


def _shuffled_padding(task: metajax.Task, extra_support: int, extra_query: int,
                      seed: int = 0) -> metajax.Task:
  """Pads a task with random examples and interleaves them with the real ones."""
  padded = pad_task(task, task.support_x.shape[0] + extra_support,
                    task.query_x.shape[0] + extra_query, key=jax.random.key(seed + 11))
  rng = np.random.default_rng(seed)
  ps, pq = rng.permutation(padded.support_x.shape[0]), rng.permutation(padded.query_x.shape[0])
  return metajax.Task(padded.support_x[ps], padded.support_y[ps], padded.query_x[pq],
                      padded.query_y[pq], padded.support_mask[ps], padded.query_mask[pq])


def _batch(task):
  return jax.tree.map(lambda a: a[None], task)


def _assert_same_results(learner, params, task, padded):
  key, step = jax.random.key(5), jnp.asarray(3)
  unmasked = padded._replace(support_mask=None, query_mask=None)

  @jax.jit
  def results(params, task, padded, unmasked):
    one = lambda t: (learner.task_loss(params, t, key, step),
                     learner.task_grad(params, t, key, step)[0], learner.evaluate(params, t, key))
    return one(task), one(padded), learner.task_loss(params, unmasked, key, step)[0]

  expected, got, unmasked_loss = results(params, task, padded, unmasked)
  chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-6)
  # The padding really is there: without its masks the loss changes.
  assert not np.allclose(unmasked_loss, expected[0][0])


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_masked_episode_matches_unpadded_or_is_refused(name):
  learner, _ = build(name)
  task = first(classification_tasks(batch=1))
  padded = _shuffled_padding(task, extra_support=4, extra_query=3)
  if not learner.supports_masks:
    with pytest.raises(ValueError, match="does not support masked"):
      learner.check_task(_batch(padded))
    return
  learner.check_task(_batch(padded))
  params = learner.init()
  # Move away from the initial point so that no gradient is accidentally zero.
  params = jax.tree.map(lambda p: p + 0.05 * jnp.cos(jnp.arange(p.size).reshape(p.shape)),
                        params)
  _assert_same_results(learner, params, task, padded)


@pytest.mark.parametrize("factory", [
    lambda m: metajax.protonet(m, ways=3),
    lambda m: metajax.maml(m, inner_lr=0.1, steps=1),
])
def test_masked_batch_norm_statistics_exclude_padding(factory):
  """Transductive BatchNorm (Conv-4) normalises by the real examples' statistics only."""
  task = first(classification_tasks(batch=1))
  # [n, 4] features -> [n, 8, 4, 1] images (each feature a 2x4 patch).
  images = lambda x: jnp.repeat(jnp.repeat(x, 2, axis=1), 4, axis=1).reshape(-1, 8, 4, 1)
  task = metajax.Task(images(task.support_x), task.support_y, images(task.query_x), task.query_y)
  outputs = 3 if "maml" in repr(factory) else None
  model = conv4_model(outputs, jax.random.key(0), input_shape=(8, 4, 1), filters=2,
                      pooled_blocks=1, conv="xla")
  learner = factory(model)
  assert learner.supports_masks
  padded = _shuffled_padding(task, extra_support=3, extra_query=2)
  learner.check_task(_batch(padded))
  _assert_same_results(learner, learner.init(), task, padded)


def test_stateful_model_without_mask_is_refused():
  """A BatchNorm model whose apply takes no mask cannot hide padding: check_task says so."""
  from flax import nnx

  class Net(nnx.Module):
    def __init__(self):
      self.dense = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
      self.norm = nnx.BatchNorm(3, rngs=nnx.Rngs(0))

    def __call__(self, x):
      return self.norm(self.dense(x))

  padded = _batch(_shuffled_padding(first(classification_tasks(batch=1)), 2, 2))
  for learner in (metajax.protonet(metajax.from_nnx(Net()), ways=3),
                  metajax.maml(metajax.from_nnx(Net()), inner_lr=0.1, steps=1)):
    assert not learner.supports_masks
    with pytest.raises(ValueError, match="BatchNorm"):
      learner.check_task(padded)
    assert metajax.protonet(metajax.from_nnx(Net()), ways=3, batch_norm="frozen").supports_masks
