"""Metric learners: ProtoNet, Matching Net, Relation Net, Siamese, R2D2.

Each algorithm's defining computation is checked against an independent one, then every learner
goes through jit, a no-retrace meta-step, finite outputs and a loss that falls on a tiny problem.
Embeddings are small MLPs (fast to compile) except for the Relation Network, which needs maps.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax
from metajax.algorithms import (
    matching_net,
    protonet,
    r2d2,
    relation_module_model,
    relation_net,
    siamese,
    verification_metrics,
)
from metajax.algorithms.siamese import pair_logits
from metajax.models import conv4_model, mlp_model

FEATURES = 6
EMBED = 8


def embedding(key=0):
  return mlp_model([16], EMBED, jax.random.key(key), input_dim=FEATURES)


def image_embedding(key=0):
  return conv4_model(None, jax.random.key(key), input_shape=(8, 8, 1), filters=4,
                     pooled_blocks=2, flatten=False)


def synthetic_tasks(key, *, batch=2, ways=3, shots=2, queries=2, image=False, shuffle=True):
  """Tasks whose classes are noisy copies of random prototypes; support order shuffled."""
  shape = (8, 8, 1) if image else (FEATURES,)
  keys = jax.random.split(key, 4)
  prototypes = jax.random.normal(keys[0], (batch, ways, *shape))
  support_y = np.tile(np.repeat(np.arange(ways), shots), (batch, 1)).astype(np.int32)
  if shuffle:
    support_y = np.stack([np.random.default_rng(i).permutation(row)
                          for i, row in enumerate(support_y)])
  query_y = np.tile(np.repeat(np.arange(ways), queries), (batch, 1)).astype(np.int32)

  def draw(k, labels):
    centres = jnp.take_along_axis(prototypes, labels.reshape(batch, -1, *[1] * len(shape)), 1)
    return centres + 0.3 * jax.random.normal(k, centres.shape)

  return metajax.Task(draw(keys[1], support_y), jnp.asarray(support_y),
                      draw(keys[2], query_y), jnp.asarray(query_y))


def first(tasks):
  return jax.tree.map(lambda a: a[0], tasks)


def features_of(model, params, x):
  return np.asarray(model.apply(params, model.state, x, train=True)[0]).reshape(len(x), -1)


LEARNERS = {
    "protonet": lambda **kw: protonet(embedding(), **kw),
    "protonet_cosine": lambda **kw: protonet(embedding(), distance="cosine", **kw),
    "matching_net": lambda **kw: matching_net(embedding(), **kw),
    "matching_net_fce": lambda **kw: matching_net(embedding(), full_context=True, features=EMBED,
                                                  processing_steps=2, **kw),
    "matching_net_learned_scale": lambda **kw: matching_net(embedding(), scale=5.0,
                                                            learn_scale=True, **kw),
    "relation_net": lambda **kw: relation_net(
        image_embedding(), relation_module_model((2, 2, 4), jax.random.key(1), filters=4,
                                                 hidden=4), **kw),
    "relation_net_split_pairs": lambda **kw: relation_net(
        image_embedding(), relation_module_model((2, 2, 4), jax.random.key(1), filters=4,
                                                 hidden=4), split_pairs=True, **kw),
    "siamese": lambda **kw: siamese(embedding(), features=EMBED, **kw),
    "r2d2": lambda **kw: r2d2(embedding(), **kw),
}


def tasks_for(name, key=0, **kwargs):
  return synthetic_tasks(jax.random.key(key), image=name.startswith("relation_net"), **kwargs)


# --- the defining computations ------------------------------------------------------------------


def test_protonet_logits_are_negative_squared_distances_to_class_means():
  model = embedding()
  learner = protonet(model)
  params = learner.init()
  task = first(synthetic_tasks(jax.random.key(0), ways=3, shots=3))
  logits = learner.predict(params, learner.adapt(params, task.support_x, task.support_y),
                           task.query_x)
  support = features_of(model, params["embedding"], task.support_x)
  query = features_of(model, params["embedding"], task.query_x)
  labels = np.asarray(task.support_y)
  means = np.stack([support[labels == c].mean(0) for c in range(3)])
  expected = -((query[:, None, :] - means[None]) ** 2).sum(-1)
  chex.assert_shape(logits, (len(query), len(labels)))  # width n_support when ways=None
  np.testing.assert_allclose(logits[:, :3], expected, rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(logits[:, 3:]) < -1e29)  # classes absent from the support set


def test_protonet_cosine_and_support_order_invariance():
  learner = protonet(embedding(), distance="cosine", ways=3)
  params = learner.init()
  task = first(synthetic_tasks(jax.random.key(1), ways=3, shots=2))
  logits = learner.predict(params, learner.adapt(params, task.support_x, task.support_y),
                           task.query_x)
  perm = np.random.default_rng(0).permutation(len(task.support_y))
  permuted = learner.predict(
      params, learner.adapt(params, task.support_x[perm], task.support_y[perm]), task.query_x)
  chex.assert_shape(logits, (task.query_x.shape[0], 3))
  chex.assert_trees_all_close(logits, permuted, rtol=1e-5, atol=1e-5)
  assert np.all(np.abs(np.asarray(logits)) <= float(params["scale"]) + 1e-4)


def test_evaluate_with_other_ways_than_training():
  learner = protonet(embedding(), ways=5)
  params = learner.init()
  task = first(synthetic_tasks(jax.random.key(2), ways=3))
  wide = learner.evaluate(params, task)
  narrow = learner.evaluate(params, task, ways=3)
  chex.assert_trees_all_close(wide, narrow, rtol=1e-5)


@pytest.mark.parametrize("full_context", [False, True])
def test_matching_net_attention_sums_to_one(full_context):
  learner = matching_net(embedding(), full_context=full_context, features=EMBED,
                         processing_steps=2)
  params = learner.init()
  task = first(synthetic_tasks(jax.random.key(3), ways=3, shots=2))
  log_probs = learner.predict(params, learner.adapt(params, task.support_x, task.support_y,
                                                    ways=3), task.query_x)
  np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
  # One class per support example: the class probabilities are the attention weights.
  n_support = task.support_x.shape[0]
  attention = np.exp(learner.predict(
      params, learner.adapt(params, task.support_x, jnp.arange(n_support)), task.query_x))
  np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
  if not full_context:
    model = embedding()
    s = features_of(model, params["embedding"], task.support_x)
    q = features_of(model, params["embedding"], task.query_x)
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        s / np.linalg.norm(s, axis=1, keepdims=True)).T
    expected = np.exp(cos) / np.exp(cos).sum(1, keepdims=True)
    np.testing.assert_allclose(attention, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("learn_scale", [False, True])
def test_matching_net_scale_sharpens_attention_and_is_learned(learn_scale):
  learner = matching_net(embedding(), scale=10.0, learn_scale=learn_scale)
  params = learner.init()
  assert ("scale" in params) == learn_scale
  task = first(synthetic_tasks(jax.random.key(3), ways=3, shots=2))
  n_support = task.support_x.shape[0]
  attention = np.exp(learner.predict(
      params, learner.adapt(params, task.support_x, jnp.arange(n_support)), task.query_x))
  model = embedding()
  s = features_of(model, params["embedding"], task.support_x)
  q = features_of(model, params["embedding"], task.query_x)
  cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
      s / np.linalg.norm(s, axis=1, keepdims=True)).T
  expected = np.exp(10 * cos) / np.exp(10 * cos).sum(1, keepdims=True)
  np.testing.assert_allclose(attention, expected, rtol=1e-4, atol=1e-6)
  if learn_scale:
    grads, _ = learner.task_grad(params, task, jax.random.key(0), jnp.asarray(0))
    assert np.isfinite(grads["scale"]) and abs(float(grads["scale"])) > 0


def test_matching_net_rejects_non_positive_scale():
  with pytest.raises(ValueError, match="scale must be > 0"):
    matching_net(embedding(), scale=0.0)


def test_r2d2_woodbury_solution_equals_primal_ridge():
  model = embedding()
  learner = r2d2(model, init_lambda=0.5)
  params = learner.init()
  task = first(synthetic_tasks(jax.random.key(4), ways=3, shots=2))  # n_support=6 < d=8
  head = learner.adapt(params, task.support_x, task.support_y, ways=3)
  x = jnp.asarray(features_of(model, params["embedding"], task.support_x))
  y = jax.nn.one_hot(task.support_y, 3)
  primal = jnp.linalg.solve(x.T @ x + 0.5 * jnp.eye(EMBED), x.T @ y)
  np.testing.assert_allclose(head.weights, primal, rtol=1e-3, atol=1e-4)


def test_siamese_distance_is_symmetric():
  learner = siamese(embedding(), features=EMBED)
  params = learner.init()
  params["distance"]["weights"] = jax.random.normal(jax.random.key(5), (EMBED,))
  x = jax.random.normal(jax.random.key(6), (4, FEATURES))
  y = jax.random.normal(jax.random.key(7), (4, FEATURES))
  forward = learner.predict(params, learner.adapt(params, x, jnp.arange(4)), y)
  backward = learner.predict(params, learner.adapt(params, y, jnp.arange(4)), x)
  chex.assert_trees_all_close(forward, backward.T, rtol=1e-5, atol=1e-5)
  f = jax.random.normal(jax.random.key(8), (3, EMBED))
  g = jax.random.normal(jax.random.key(9), (5, EMBED))
  chex.assert_trees_all_close(pair_logits(params["distance"], f, g),
                              pair_logits(params["distance"], g, f).T, rtol=1e-6)


def test_verification_metrics_against_brute_force():
  rng = np.random.default_rng(0)
  scores = np.round(rng.normal(size=40), 1)  # ties on purpose
  same = rng.random(40) < 0.4
  pos, neg = scores[same], scores[~same]
  auc = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
  decided = scores > 0
  tp = np.sum(decided & same)
  f1 = 2 * tp / (decided.sum() + same.sum())
  metrics = verification_metrics(scores, same)
  np.testing.assert_allclose(metrics["roc_auc"], auc)
  np.testing.assert_allclose(metrics["f1"], f1)
  np.testing.assert_allclose(metrics["accuracy"], np.mean(decided == same))


def test_relation_scores_in_unit_interval():
  learner = LEARNERS["relation_net"]()
  params = learner.init()
  task = first(tasks_for("relation_net", ways=3))
  scores = learner.predict(params, learner.adapt(params, task.support_x, task.support_y, ways=3),
                           task.query_x)
  chex.assert_shape(scores, (task.query_x.shape[0], 3))
  assert np.all((np.asarray(scores) > 0) & (np.asarray(scores) < 1))


@pytest.mark.parametrize("conv", ["matmul", "xla"])
def test_relation_module_on_split_pairs_equals_concatenated_pairs(conv):
  # 5x5 maps: the 'SAME' padding of the first convolution touches every border.
  module = relation_module_model((5, 5, 3), jax.random.key(0), filters=4, hidden=4, conv=conv)
  queries = jax.random.normal(jax.random.key(1), (4, 5, 5, 3))
  classes = jax.random.normal(jax.random.key(2), (3, 5, 5, 3))
  pairs = jnp.concatenate([jnp.repeat(queries, 3, axis=0), jnp.tile(classes, (4, 1, 1, 1))], -1)

  def logits(params, x):
    return module.apply(params, module.state, x, train=True)[0]

  np.testing.assert_allclose(logits(module.params, (queries, classes)),
                             logits(module.params, pairs), rtol=1e-5, atol=1e-5)
  direction = jax.random.normal(jax.random.key(3), (12,))
  split_grad = jax.grad(lambda p: logits(p, (queries, classes)) @ direction)(module.params)
  pairs_grad = jax.grad(lambda p: logits(p, pairs) @ direction)(module.params)
  chex.assert_trees_all_close(split_grad, pairs_grad, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="one shape"):
    logits(module.params, (queries, classes[:, :4]))


def test_relation_net_split_pairs_gives_the_same_loss_and_meta_gradient():
  concatenated, split = LEARNERS["relation_net"](), LEARNERS["relation_net_split_pairs"]()
  params = concatenated.init()
  task = first(tasks_for("relation_net", ways=3))
  step = jnp.zeros((), jnp.int32)
  grads_a, metrics_a = concatenated.task_grad(params, task, jax.random.key(0), step)
  grads_b, metrics_b = split.task_grad(params, task, jax.random.key(0), step)
  np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-5)
  chex.assert_trees_all_close(grads_a, grads_b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_class_width_changes_neither_loss_nor_meta_gradient(name):
  """``ways=3`` on 3-way 2-shot episodes drops the three empty class columns that the default
  width (the support size, 6) carries: the same loss, accuracy and meta-gradient. (A Relation
  Network's module normalises over its pairs, empty ones included, so there the equality holds
  with stored batch-norm statistics; the next test checks what it sees with batch statistics.)"""
  frozen = dict(batch_norm="frozen") if name.startswith("relation_net") else {}
  default, exact = LEARNERS[name](**frozen), LEARNERS[name](ways=3, **frozen)
  params = default.init()
  task = first(tasks_for(name, key=5, ways=3, shots=2))
  step = jnp.zeros((), jnp.int32)
  grads_a, metrics_a = default.task_grad(params, task, jax.random.key(0), step)
  grads_b, metrics_b = exact.task_grad(params, task, jax.random.key(0), step)
  chex.assert_trees_all_close(metrics_a, metrics_b, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(grads_a, grads_b, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(default.evaluate(params, task), exact.evaluate(params, task),
                              rtol=1e-5, atol=1e-6)
  head = exact.adapt(params, task.support_x, task.support_y)
  chex.assert_shape(exact.predict(params, head, task.query_x), (task.query_x.shape[0], 3))


def test_relation_net_with_the_episode_width_normalises_over_real_pairs_only():
  embed = image_embedding()
  module = relation_module_model((2, 2, 4), jax.random.key(1), filters=4, hidden=4)
  learner = relation_net(embed, module, ways=3, split_pairs=True)
  params = learner.init()
  task = first(tasks_for("relation_net", key=6, ways=3, shots=2))
  scores = learner.predict(params, learner.adapt(params, task.support_x, task.support_y),
                           task.query_x)
  features = lambda x: embed.apply(params["embedding"], embed.state, x, train=True)[0]
  support, query = features(task.support_x), features(task.query_x)
  classes = jnp.stack([support[np.asarray(task.support_y) == c].sum(0) for c in range(3)])
  n_query = query.shape[0]
  pairs = jnp.concatenate([jnp.repeat(query, 3, axis=0), jnp.tile(classes, (n_query, 1, 1, 1))],
                          -1)
  expected = jax.nn.sigmoid(module.apply(params["relation"], module.state, pairs,
                                         train=True)[0]).reshape(n_query, 3)
  np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


# --- input checks -------------------------------------------------------------------------------


def test_check_task_rejects_bad_labels():
  learner = protonet(embedding(), ways=3)
  tasks = synthetic_tasks(jax.random.key(0), ways=3)
  learner.check_task(tasks)
  with pytest.raises(ValueError, match="no support example"):
    learner.check_task(tasks._replace(support_y=jnp.zeros_like(tasks.support_y)))
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    learner.check_task(tasks._replace(query_y=tasks.query_y + 1))
  with pytest.raises(ValueError, match="n_support"):
    protonet(embedding()).check_task(tasks._replace(support_y=tasks.support_y * 10,
                                                    query_y=tasks.query_y * 10))


# --- every learner: jit, no retrace, finite, learns ---------------------------------------------


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_meta_step_compiles_once_is_finite_and_lowers_the_loss(name):
  learner = LEARNERS[name]()
  traces = []

  def counted_task_grad(*args):
    traces.append(1)  # runs once per trace (vmap traces the function once)
    return learner.task_grad(*args)

  counted = learner._replace(task_grad=counted_task_grad)
  optimizer = optax.adam(1e-2)
  step = metajax.make_meta_step(counted, optimizer, batching="vmap")
  state = metajax.init_meta_state(counted, optimizer)
  tasks = tasks_for(name, key=10)
  losses = []
  for i in range(6):
    state, metrics = step(state, tasks, jax.random.key(i))
    chex.assert_tree_all_finite(metrics)
    losses.append(float(metrics["loss"]))
  assert len(traces) == 1, f"task_grad traced {len(traces)} times"
  chex.assert_tree_all_finite(state.params)
  assert losses[-1] < losses[0], losses
