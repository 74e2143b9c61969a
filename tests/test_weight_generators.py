"""Hypernetwork, VERSA and SNAIL: what they write, what it is invariant to, and what they reject.

The contract suite (jit, no retrace, finite, meta-gradient against finite differences) runs them
from ``tests/test_contract.py``; these tests check each learner's own claims against independent
computations.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import WAYS, classification_tasks, first, tanh_classifier

import metajax
from metajax.algorithms.snail import DenseBlock, Snail
from metajax.algorithms.versa import predictive_log_probabilities, sample_heads
from metajax.train import config as config_lib
from metajax.train import registry


def hypernetwork(**kwargs):
  return metajax.hypernetwork(tanh_classifier(), ways=WAYS, features=WAYS, hidden=8, **kwargs)


def versa(**kwargs):
  return metajax.versa(tanh_classifier(), ways=WAYS, features=WAYS, hidden=8, **kwargs)


def snail(**kwargs):
  return metajax.snail(tanh_classifier(), ways=WAYS, features=WAYS, filters=8,
                       attention=((4, 4), (8, 8)), **kwargs)


def perturbed(params, scale=0.5, key=1):
  """Random meta-parameters: the generators' zero-initialised last layers get real weights."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(key), len(leaves))
  return jax.tree.unflatten(treedef, [x + scale * jax.random.normal(k, x.shape)
                                      for x, k in zip(leaves, keys)])


def renamed(task, permutation):
  """The task with class ``c`` called ``permutation[c]`` (support and query alike)."""
  permutation = jnp.asarray(permutation)
  return task._replace(support_y=permutation[task.support_y], query_y=permutation[task.query_y])


def reordered(task, order):
  return task._replace(support_x=task.support_x[order], support_y=task.support_y[order])


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PERMUTATION = np.array([2, 0, 1])  # class c becomes PERMUTATION[c]
ORDER = np.array([5, 2, 0, 4, 1, 3])


@pytest.mark.parametrize("build", [hypernetwork, versa, snail], ids=["hypernetwork", "versa",
                                                                     "snail"])
def test_a_class_without_support_examples_is_rejected_before_compiling(build):
  learner = build()
  tasks = classification_tasks(batch=2)
  # Task 1 loses class 2 from its support and query sets (class 1 takes its place).
  support_y, query_y = tasks.support_y.copy(), tasks.query_y.copy()
  support_y[1][support_y[1] == 2] = 1
  query_y[1][query_y[1] == 2] = 1
  with pytest.raises(ValueError, match=r"support set of task 1 has no example of classes \[2\]"):
    learner.check_task(tasks._replace(support_y=support_y, query_y=query_y))
  learner.check_task(tasks)  # the full tasks pass
  factory = getattr(metajax, learner.name)
  with pytest.raises(ValueError, match="needs ways=<classes per episode>"):
    factory(tanh_classifier(), ways=None, features=WAYS)


def test_hypernetwork_writes_protonet_classifier_at_initialisation():
  """Zero-initialised generator, scale 2: the written head's softmax is ProtoNet's."""
  learner = hypernetwork()
  protonet = metajax.protonet(tanh_classifier(), ways=WAYS)
  task = first(classification_tasks())
  params = learner.init()
  ours = jax.nn.softmax(learner.predict(params, learner.adapt(params, task.support_x,
                                                              task.support_y), task.query_x))
  proto_params = protonet.init()
  theirs = jax.nn.softmax(protonet.predict(
      proto_params, protonet.adapt(proto_params, task.support_x, task.support_y), task.query_x))
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_film,finetune_steps", [(False, 0), (True, 3)])
def test_hypernetwork_is_invariant_to_support_order_and_equivariant_to_class_names(
    use_film, finetune_steps):
  learner = hypernetwork(use_film=use_film, finetune_steps=finetune_steps, inner_lr=0.3)
  task = first(classification_tasks())
  params = perturbed(learner.init(), scale=0.1)
  head = learner.adapt(params, task.support_x, task.support_y)
  logits = learner.predict(params, head, task.query_x)
  # The generator really writes something other than the class means.
  features = jnp.tanh(task.support_x @ params["embedding"]["body"]["w"]
                      + params["embedding"]["body"]["b"])
  features = features @ params["embedding"]["head"]["w"] + params["embedding"]["head"]["b"]
  means = np.stack([features[task.support_y == c].mean(0) for c in range(WAYS)], 1)
  assert not np.allclose(head.weights, means, atol=1e-2)

  shuffled = reordered(task, ORDER)
  shuffled_head = learner.adapt(params, shuffled.support_x, shuffled.support_y)
  np.testing.assert_allclose(shuffled_head.weights, head.weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(learner.predict(params, shuffled_head, task.query_x), logits,
                             rtol=1e-5, atol=1e-5)

  other = renamed(task, PERMUTATION)
  other_head = learner.adapt(params, other.support_x, other.support_y)
  np.testing.assert_allclose(other_head.weights[:, PERMUTATION], head.weights, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(learner.predict(params, other_head, task.query_x)[:, PERMUTATION],
                             logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(learner.evaluate(params, other)["loss"],
                             learner.evaluate(params, task)["loss"], rtol=1e-5)


def test_hypernetwork_finetuning_is_gradient_descent_on_the_written_head():
  """``finetune_steps`` SGD steps on the support loss, against a hand-written loop."""
  learner = hypernetwork(use_film=True, finetune_steps=2, inner_lr=0.3)
  task = first(classification_tasks())
  params = perturbed(learner.init(), scale=0.1)
  written = learner.adapt(params, task.support_x, task.support_y, steps=0)
  tuned = learner.adapt(params, task.support_x, task.support_y)
  embedding = tanh_classifier()
  features = embedding.apply(params["embedding"], {}, task.support_x)[0]
  features = features * (1 + written.film_scale) + written.film_shift

  def support_loss(w, b):
    logits = params["scale"] * (features @ w + b)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(task.support_y)),
                                                 task.support_y])

  w, b = written.weights, written.bias
  for _ in range(2):
    gw, gb = jax.grad(support_loss, argnums=(0, 1))(w, b)
    w, b = w - 0.3 * gw, b - 0.3 * gb
  np.testing.assert_allclose(tuned.weights, w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(tuned.bias, b, rtol=1e-5, atol=1e-6)
  assert support_loss(w, b) < support_loss(written.weights, written.bias) - 1e-4
  # steps= overrides the test-time number of steps.
  more = learner.adapt(params, task.support_x, task.support_y, steps=5)
  assert not np.allclose(more.weights, tuned.weights)


def test_versa_predictive_is_the_monte_carlo_mean_of_softmaxes():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(4, 3)).astype(np.float32)
  weights = rng.normal(size=(7, 3, 5)).astype(np.float32)
  bias = rng.normal(size=(7, 5)).astype(np.float32)
  logits = 1.5 * (np.einsum("nd,ldw->lnw", features, weights) + bias[:, None])
  probabilities = np.exp(logits - logits.max(-1, keepdims=True))
  probabilities /= probabilities.sum(-1, keepdims=True)
  np.testing.assert_allclose(predictive_log_probabilities(features, weights, bias, 1.5),
                             np.log(probabilities.mean(0)), rtol=1e-5, atol=1e-6)


def test_versa_samples_come_from_the_key_and_the_posterior_is_equivariant():
  learner = versa(samples=3, test_samples=5, init_log_variance=-2.0)
  task = first(classification_tasks())
  params = perturbed(learner.init(), scale=0.3)
  key = jax.random.key(4)
  posterior = learner.adapt(params, task.support_x, task.support_y, key)
  assert posterior.weights.shape == (5, WAYS, WAYS) and posterior.bias.shape == (5, WAYS)
  predictions = learner.predict(params, posterior, task.query_x)
  np.testing.assert_allclose(jnp.exp(predictions).sum(-1), 1.0, rtol=1e-5)
  # Same key, same draws; another key, other draws.
  again = learner.adapt(params, task.support_x, task.support_y, key)
  np.testing.assert_array_equal(again.weights, posterior.weights)
  other_draws = learner.adapt(params, task.support_x, task.support_y, jax.random.key(5))
  assert not np.allclose(other_draws.weights, posterior.weights)

  # Reordering the support set changes nothing, with the same key.
  shuffled = reordered(task, ORDER)
  same = learner.adapt(params, shuffled.support_x, shuffled.support_y, key)
  np.testing.assert_allclose(same.weights, posterior.weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(learner.predict(params, same, task.query_x), predictions,
                             rtol=1e-5, atol=1e-5)

  # Renaming classes permutes each class's posterior exactly ...
  other = renamed(task, PERMUTATION)
  moved = learner.adapt(params, other.support_x, other.support_y, key)
  np.testing.assert_allclose(moved.mean[PERMUTATION], posterior.mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(moved.log_variance[PERMUTATION], posterior.log_variance,
                             rtol=1e-5, atol=1e-6)
  # ... but the noise of column c stays with column c, so with the same key the renamed task's
  # classes get other draws and the predictions are not a permutation of the originals ...
  moved_predictions = learner.predict(params, moved, task.query_x)
  assert not np.allclose(moved_predictions[:, PERMUTATION], predictions, atol=1e-4)
  # ... while permuting the noise along with the classes gives exactly the permuted predictions.
  noise = jax.random.normal(key, (5, WAYS, WAYS + 1))
  inverse = np.argsort(PERMUTATION)
  weights, bias = sample_heads(moved.mean, moved.log_variance, noise[:, inverse])
  np.testing.assert_allclose(weights[..., PERMUTATION], posterior.weights, rtol=1e-5, atol=1e-6)
  permuted = predictive_log_probabilities(learner_features(params, task.query_x), weights, bias,
                                          params["scale"])
  np.testing.assert_allclose(permuted[:, PERMUTATION], predictions, rtol=1e-5, atol=1e-5)


def learner_features(params, x):
  return tanh_classifier().apply(params["embedding"], {}, x)[0]


def test_versa_meta_gradient_reaches_the_log_variances():
  """Reparameterised draws: the query loss depends on, and is differentiated through, sigma."""
  learner = versa(samples=4, init_log_variance=-1.0)
  task = first(classification_tasks())
  params = perturbed(learner.init(), scale=0.3)
  grads, _ = learner.task_grad(params, task, jax.random.key(0), jnp.zeros([], jnp.int32))
  assert float(jnp.abs(grads["amortization"]["log_variance"][0]["b"]).max()) > 1e-4
  deterministic = versa(samples=4, init_log_variance=-40.0)
  params = deterministic.init()
  loss = deterministic.task_loss(params, task, jax.random.key(0), 0)[0]
  # Without variance every draw is the mean head: VERSA's loss is then the hypernetwork's.
  head_loss = hypernetwork().task_loss(hypernetwork().init(), task, jax.random.key(0), 0)[0]
  np.testing.assert_allclose(loss, head_loss, rtol=1e-5)


def test_snail_is_causal_and_reads_each_query_on_its_own():
  model = Snail(5, 3, length=6, filters=4, attention=((4, 4), (4, 4)), rngs=metajax_rngs())
  sequence = jax.random.normal(jax.random.key(0), (6, 5))
  changed = sequence.at[4].add(3.0)
  out, out_changed = model.sequence(sequence), model.sequence(changed)
  np.testing.assert_allclose(out[:4], out_changed[:4], rtol=1e-6)
  assert not np.allclose(out[4:], out_changed[4:])
  # Each dense block's two matmuls are its causal dilated convolution.
  for block in model.layers:
    if isinstance(block, DenseBlock):
      x = jax.random.normal(jax.random.key(2), (6, block.conv.in_features))
      np.testing.assert_allclose(block(x), DenseBlock._gate(x, block.conv(x)), rtol=1e-5,
                                 atol=1e-6)
  # Running the support steps once and extending them by each query gives, for every query, the
  # last output of the whole sequence support + query (dilations 1, 2, 4 reach before the start
  # for short supports: 1 and 5 support steps).
  queries = jax.random.normal(jax.random.key(1), (3, 5))
  for n in (1, 5):
    naive = jnp.stack([model.sequence(jnp.concatenate([sequence[:n], q[None]]))[-1]
                       for q in queries])
    np.testing.assert_allclose(model((sequence[:n], queries)), naive, rtol=1e-5, atol=1e-6)

  learner = snail(shots=2)
  task = first(classification_tasks())
  params = perturbed(learner.init(), scale=0.1)
  memory = learner.adapt(params, task.support_x, task.support_y)  # no key: order as given
  np.testing.assert_array_equal(memory.steps[:, -WAYS:].argmax(-1), task.support_y)
  logits = learner.predict(params, memory, task.query_x)
  others = task.query_x.at[1:].set(0.0)
  np.testing.assert_allclose(learner.predict(params, memory, others)[0], logits[0], rtol=1e-5,
                             atol=1e-6)
  # The key shuffles the support order (episodes arrive sorted by class), which matters to SNAIL.
  shuffled = learner.adapt(params, task.support_x, task.support_y, jax.random.key(3))
  assert sorted(map(tuple, np.asarray(shuffled.steps))) == sorted(map(tuple,
                                                                      np.asarray(memory.steps)))
  assert not np.array_equal(shuffled.steps, memory.steps)
  assert not np.allclose(learner.predict(params, shuffled, task.query_x), logits)


def metajax_rngs():
  from flax import nnx

  return nnx.Rngs(0)


@pytest.mark.parametrize("name", ["hypernetwork", "versa", "snail"])
def test_configs_build_learners_through_the_registry(name):
  config = config_lib.load_config(str(CONFIGS / f"{name}_omniglot.py:5w1s"),
                                  ["model_kwargs.filters=4"])
  learner = registry.build_learner(config, jax.random.key(0))
  assert learner.name == name
  params = learner.init()
  assert jax.tree.leaves(params)
  if name == "snail":
    with pytest.raises(ValueError, match="snail tests with the training ways"):
      config_lib.load_config(str(CONFIGS / "snail_omniglot.py:5w1s"), ["test_ways=3"])
