"""The contract every algorithm meets: compiled once, finite, stable state, learns.

Add a new algorithm by adding a builder to ``ALGORITHMS``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tiny import FEATURES, WAYS, bn_classifier, classification_tasks, first, tanh_classifier

import metajax
from metajax.testing import check_meta_gradient

ALGORITHMS = {
    "maml": lambda m: metajax.maml(m, inner_lr=0.5, steps=2),
    "fomaml": lambda m: metajax.fomaml(m, inner_lr=0.5, steps=2),
    "anil": lambda m: metajax.anil(m, inner_lr=0.5, steps=2),
    "meta_sgd": lambda m: metajax.meta_sgd(m, inner_lr=0.5, steps=2),
    "maml_plus_plus": lambda m: metajax.maml_plus_plus(m, inner_lr=0.5, steps=2),
    # Per-step BatchNorm weights and running statistics need BatchNorm: Conv-4 where the test
    # passes one, else the tiny BatchNorm classifier.
    "maml_plus_plus_per_step_bn": lambda m: metajax.maml_plus_plus(
        m if jax.tree.leaves(m.state) else bn_classifier(), inner_lr=0.5, steps=2,
        per_step_bn_weights=True, per_step_bn_stats=True),
    "reptile": lambda m: metajax.reptile(m, inner_lr=0.1, steps=3),
    # Metric and closed-form learners use the same network as an embedding.
    "protonet": lambda m: metajax.protonet(m, ways=WAYS),
    "protonet_cosine": lambda m: metajax.protonet(m, ways=WAYS, distance="cosine"),
    "matching_net": lambda m: metajax.matching_net(m, ways=WAYS),
    "matching_net_fce": lambda m: metajax.matching_net(m, ways=WAYS, full_context=True,
                                                       features=WAYS, processing_steps=2,
                                                       key=jax.random.key(3)),
    "relation_net": lambda m: metajax.relation_net(m, pair_relation_module(), ways=WAYS),
    "siamese": lambda m: metajax.siamese(m, features=WAYS, ways=WAYS),
    "r2d2": lambda m: metajax.r2d2(m, ways=WAYS),
    # Implicit gradients: the inner problem is solved (100 steps, lam=4) so FD sees its optimum.
    "imaml": lambda m: metajax.imaml(m, lam=4.0, inner_lr=0.2, steps=100, cg_steps=30),
    "metaoptnet": lambda m: metajax.metaoptnet(m, ways=WAYS, tol=1e-5, max_iters=5000),
    "cavia": lambda m: metajax.cavia(tanh_classifier(inputs=FEATURES + 2), context_dim=2),
    # Transfer evaluators: the head is fitted on the support set with the embedding fixed; their
    # task_loss differentiates through the fine-tuning (Baseline) or the probe's optimum.
    "baseline": lambda m: metajax.baseline(m, ways=WAYS, steps=5),
    "linear_probe": lambda m: metajax.linear_probe(m, ways=WAYS),
    # Pretraining: cross-entropy over all classes (here the 3 of the tiny tasks).
    "pretrain": lambda m: metajax.pretrain(m, classes=WAYS, features=WAYS,
                                           evaluator="nearest_centroid", ways=WAYS),
    "hypernetwork": lambda m: metajax.hypernetwork(m, ways=WAYS, features=WAYS, hidden=8,
                                                   use_film=True, finetune_steps=2),
    "versa": lambda m: metajax.versa(m, ways=WAYS, features=WAYS, hidden=8, samples=4,
                                     test_samples=8, init_log_variance=-3.0),
    "snail": lambda m: metajax.snail(m, ways=WAYS, features=WAYS, shots=2, filters=8,
                                     attention=((4, 4), (8, 8))),
}
# Algorithms whose task_grad is not the gradient of task_loss (checked elsewhere).
NOT_A_GRADIENT = {"fomaml", "reptile"}
OUTER = {"reptile": lambda: metajax.reptile_outer_optimizer(0.5)}


def pair_relation_module(hidden: int = 8) -> metajax.Model:
  """Scores concatenated [query, class] embeddings ``[m, 2 * WAYS] -> [m]``."""
  k1, k2 = jax.random.split(jax.random.key(7))
  params = {"w1": jax.random.normal(k1, (2 * WAYS, hidden)) * 0.5,
            "w2": jax.random.normal(k2, (hidden, 1)) * 0.5}
  return metajax.from_function(lambda p, x: (jnp.tanh(x @ p["w1"]) @ p["w2"])[:, 0], params)


def build(name):
  # SGD, not Adam: Adam's first update is ~lr * sign(g), which turns float noise in gradients
  # that are zero in exact arithmetic (e.g. a shift of all ProtoNet embeddings) into lr-sized
  # differences between batching modes.
  learner = ALGORITHMS[name](tanh_classifier())
  optimizer = OUTER.get(name, lambda: optax.sgd(0.1))()
  return learner, optimizer


@pytest.fixture(params=sorted(ALGORITHMS))
def algorithm(request):
  return request.param


def test_compiles_once_agrees_across_batching_and_learns(algorithm):
  """Each batching mode: no retrace after the first call, finite outputs, stable state
  shapes, the same first update as vmap; and meta-training lowers the loss of its tasks."""
  learner, optimizer = build(algorithm)
  tasks = classification_tasks(batch=4)
  before = metajax.evaluate_tasks(learner, learner.init(), tasks, jax.random.key(0))["loss"]
  first_updates = {}
  for batching in ("vmap", "map", "chunked", "unrolled"):
    traces = []
    task_grad = learner.task_grad

    def counted_task_grad(*args, task_grad=task_grad, traces=traces):
      traces.append(1)
      return task_grad(*args)

    counted = learner._replace(task_grad=counted_task_grad)
    meta_step = metajax.make_meta_step(counted, optimizer, batching=batching, chunk_size=2)
    state = metajax.init_meta_state(counted, optimizer)
    shapes = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    state, metrics = meta_step(state, tasks, jax.random.key(0))
    # Copies: np.asarray may view a buffer that the next, donating call reuses.
    first_updates[batching] = (jax.tree.map(np.array, state.params),
                               jax.tree.map(np.array, metrics))
    traced_by_first_call = len(traces)
    assert traced_by_first_call >= 1
    steps = 40 if batching == "vmap" else 4
    for i in range(1, steps):
      state, metrics = meta_step(state, tasks, jax.random.key(i))
      chex.assert_tree_all_finite((state.params, metrics))
      assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == shapes
    assert len(traces) == traced_by_first_call, f"{batching}: the meta-step retraced"
    assert int(state.step) == steps
    assert {"loss", "grad_norm"} <= set(metrics)
    if batching == "vmap":
      after = metajax.evaluate_tasks(learner, state.params, tasks, jax.random.key(0))["loss"]
      assert after.mean() < before.mean(), (before.mean(), after.mean())
    else:
      chex.assert_trees_all_close(first_updates[batching], first_updates["vmap"], rtol=1e-4,
                                  atol=1e-5)


def test_vmap_meta_step_traces_task_grad_once():
  learner, optimizer = build("maml")
  learner = learner._replace(task_grad=chex.assert_max_traces(learner.task_grad, n=1))
  meta_step = metajax.make_meta_step(learner, optimizer, batching="vmap")
  state = metajax.init_meta_state(learner, optimizer)
  for i in range(3):
    state, _ = meta_step(state, classification_tasks(), jax.random.key(i))


def test_meta_gradient_matches_finite_differences(algorithm):
  if algorithm in NOT_A_GRADIENT:
    pytest.skip(f"{algorithm}'s update is not the gradient of task_loss; see test_maml_family.py")
  learner, _ = build(algorithm)
  check_meta_gradient(learner, learner.init(), first(classification_tasks()), jax.random.key(0),
                      directions=3, eps=1e-2, rtol=2e-2, atol=2e-4)


def test_evaluate_reports_accuracy_in_unit_interval(algorithm):
  learner, _ = build(algorithm)
  metrics = metajax.evaluate_tasks(learner, learner.init(), classification_tasks(),
                                   jax.random.key(0))
  assert metrics["accuracy"].shape == (4,)
  assert np.all((metrics["accuracy"] >= 0) & (metrics["accuracy"] <= 1))
  # Evaluating one task at a time (CPU's default, memory of one task) computes the same.
  for batching in ("map", "vmap"):
    other = metajax.evaluate_tasks(learner, learner.init(), classification_tasks(),
                                   jax.random.key(0), batching=batching)
    for name in metrics:
      np.testing.assert_allclose(other[name], metrics[name], rtol=1e-5, atol=1e-6)


def test_auto_batching_picks_map_on_cpu_and_vmap_elsewhere():
  learner, optimizer = build("maml")
  meta_step = metajax.make_meta_step(learner, optimizer)
  meta_step(metajax.init_meta_state(learner, optimizer), classification_tasks(), jax.random.key(0))
  expected = "map" if jax.default_backend() == "cpu" else "vmap"  # no XLA convolution here
  assert meta_step.batching == expected


def test_jitted_step_donates_state():
  learner, optimizer = build("maml")
  meta_step = metajax.make_meta_step(learner, optimizer, batching="vmap")
  state = metajax.init_meta_state(learner, optimizer)
  new_state, _ = meta_step(state, classification_tasks(), jax.random.key(0))
  assert jax.tree.leaves(state.params)[0].is_deleted()
  assert not jax.tree.leaves(new_state.params)[0].is_deleted()
  # The learner's own initial parameters survive donation.
  fresh = metajax.init_meta_state(learner, optimizer)
  assert jnp.isfinite(jax.tree.leaves(fresh.params)[0]).all()


def test_predict_task_scores_the_query_as_evaluate_does(algorithm):
  """``predict_task`` (what ``metajax predict`` runs) gives the outputs ``evaluate`` scores.

  The embedding has BatchNorm in the default transductive mode, where a metric learner's
  ``evaluate`` normalises support and query as one batch: ``predict(adapt(...))``, which
  normalises each set apart, gives other logits, and the check below would fail on it.
  """
  if algorithm == "cavia":
    pytest.skip("cavia's network takes the context as extra inputs; its contract entry has one")
  model = metajax.models.conv4_model(WAYS, jax.random.key(1), input_shape=(16, 16, 1), filters=4)
  learner = ALGORITHMS[algorithm](model)
  params = learner.init()
  keys = jax.random.split(jax.random.key(2), 3)
  support_y, query_y = jnp.repeat(jnp.arange(WAYS), 2), jnp.repeat(jnp.arange(WAYS), 4)
  # Query images brighter than the support: their batch statistics differ from the episode's.
  task = metajax.Task(jax.random.normal(keys[0], (2 * WAYS, 16, 16, 1)), support_y,
                      2.0 + 3.0 * jax.random.normal(keys[1], (4 * WAYS, 16, 16, 1)), query_y)
  metrics = learner.evaluate(params, task, keys[2])
  logits = learner.predict_task(params, task.support_x, task.support_y, task.query_x, keys[2])
  assert logits.shape == (4 * WAYS, WAYS)
  np.testing.assert_allclose(float(jnp.mean(jnp.argmax(logits, -1) == query_y)),
                             float(metrics["accuracy"]), atol=1e-6)
  if algorithm not in ("relation_net", "siamese"):  # their query loss is not cross-entropy
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, query_y).mean()
    np.testing.assert_allclose(float(loss), float(metrics["loss"]), rtol=1e-4, atol=1e-5)
