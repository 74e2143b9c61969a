"""Transfer baselines (fine-tuned heads, linear probe, pretraining) and multi-task learning."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tiny import WAYS, classification_tasks, tanh_classifier

import metajax
from metajax.algorithms import init_multitask_state, multitask_step
from metajax.algorithms.transfer import (
  fine_tune_head,
  fit_logistic_regression,
  l2_normalize,
)
from metajax.data import from_labels
from metajax.data.batch_sampler import batch_sampler

sklearn_linear = pytest.importorskip("sklearn.linear_model")


def identity_embedding(features: int = 4) -> metajax.Model:
  """A fixed embedding with one (unused by the evaluators) scalar parameter."""
  return metajax.from_function(lambda p, x: x + 0.0 * p["unused"], {"unused": jnp.zeros([])})


def probe_data(seed=0, n=18, d=6, ways=3):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(ways), n // ways)
  x = rng.normal(size=(n, d)) + 1.5 * rng.normal(size=(ways, d))[y]
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y.astype(np.int32)


@pytest.mark.parametrize("l2", [1.0, 0.25])
def test_probe_matches_sklearn_logistic_regression(l2):
  x, y = probe_data()
  head = jax.jit(lambda x, y: fit_logistic_regression(x, y, 3, l2=l2))(x, y)
  # Same objective: C * sum_i CE_i + ||W||^2 / 2 with C = 1 / l2, bias not penalised.
  reference = sklearn_linear.LogisticRegression(C=1 / l2, tol=1e-12, max_iter=10_000).fit(
      x.astype(np.float64), y)
  np.testing.assert_allclose(head.weights, reference.coef_.T, atol=1e-4)
  # Softmax is invariant to a common bias shift: compare centred biases and probabilities.
  np.testing.assert_allclose(head.bias, reference.intercept_ - reference.intercept_.mean(),
                             atol=1e-4)
  probabilities = jax.nn.softmax(x @ head.weights + head.bias)
  np.testing.assert_allclose(probabilities, reference.predict_proba(x), atol=1e-4)


def test_probe_ignores_absent_classes_and_its_gradient_is_the_optimum_s():
  x, y = probe_data()
  fit = jax.jit(fit_logistic_regression, static_argnums=2)
  wide = fit(jnp.asarray(x), jnp.asarray(y), 5, l2=0.5)
  exact = fit(jnp.asarray(x), jnp.asarray(y), 3, l2=0.5)
  np.testing.assert_allclose(wide.weights[:, :3], exact.weights, atol=1e-5)
  np.testing.assert_allclose(wide.weights[:, 3:], 0.0)
  np.testing.assert_allclose(wide.counts, [6, 6, 6, 0, 0])

  # Implicit differentiation of the optimum against central differences (float64).
  def probe_output(features):
    head = fit_logistic_regression(features, jnp.asarray(y), 3, l2=0.5)
    return jnp.sum(jnp.sin(head.weights)) + jnp.sum(head.bias ** 2)

  with jax.enable_x64(True):
    features = jnp.asarray(x, jnp.float64)
    direction = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
    analytic = jnp.vdot(jax.jit(jax.grad(probe_output))(features), direction)
    eps = 1e-5
    output = jax.jit(probe_output)
    numeric = (output(features + eps * direction) - output(features - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_fine_tuned_head_loss_decreases_to_the_closed_form_optimum():
  # Two points +u (class 0) and -u (class 1). By symmetry the optimum is W = a [u, -u], b = 0,
  # and stationarity of mean CE + lambda/2 ||W||^2 reads lambda a = sigmoid(-2a): with
  # lambda = sigmoid(-2) the optimum is a = 1 exactly.
  u = np.array([0.6, -0.8, 0.0], np.float32)
  features = jnp.asarray(np.stack([u, -u]))
  weight_decay = float(jax.nn.sigmoid(-2.0))
  head, losses = jax.jit(lambda f: fine_tune_head(
      f, jnp.array([0, 1]), 2, cosine=False, steps=400, lr=1.0, momentum=0.0,
      weight_decay=weight_decay))(features)
  assert np.all(np.diff(np.asarray(losses)) <= 1e-6), "gradient descent must not increase loss"
  assert losses[-1] < 0.5 * losses[0]
  np.testing.assert_allclose(head.weights, np.stack([u, -u], axis=1), atol=1e-4)
  np.testing.assert_allclose(head.bias, 0.0, atol=1e-5)


def test_cosine_head_separates_clusters_and_loss_decreases():
  x, y = probe_data(n=12)
  head, losses = fine_tune_head(jnp.asarray(x), jnp.asarray(y), 3, cosine=True, steps=100,
                                lr=0.5, scale=10.0)
  assert losses[-1] < 0.5 * losses[0]
  logits = 10.0 * l2_normalize(jnp.asarray(x)) @ l2_normalize(head.weights.T).T
  np.testing.assert_array_equal(np.argmax(logits, axis=1), y)


EVALUATORS = {
    "baseline": lambda m: metajax.baseline(m, ways=WAYS, steps=30),
    "baseline_plus_plus": lambda m: metajax.baseline_plus_plus(m, ways=WAYS, steps=30,
                                                               scale=10.0),
    "linear_probe": lambda m: metajax.linear_probe(m, ways=WAYS),
    "nearest_centroid": lambda m: metajax.nearest_centroid(m, ways=WAYS),
}


@pytest.mark.parametrize("name", sorted(EVALUATORS))
def test_evaluators_score_episodes_under_jit(name):
  learner = EVALUATORS[name](identity_embedding())
  tasks = classification_tasks(batch=3)  # well-separated Gaussian clusters
  # map and vmap agree for the contract's learners (tests/test_contract.py); map here.
  mapped = metajax.evaluate_tasks(learner, learner.init(), tasks, jax.random.key(0),
                                  batching="map")
  np.testing.assert_array_equal(mapped["accuracy"], 1.0)
  # adapt + predict give the evaluate logits' classes.
  task = jax.tree.map(lambda a: jnp.asarray(a[0]), tasks)
  adapted = learner.adapt(learner.init(), task.support_x, task.support_y, jax.random.key(0))
  predicted = jnp.argmax(learner.predict(learner.init(), adapted, task.query_x), axis=-1)
  np.testing.assert_array_equal(predicted, task.query_y)


def test_any_embedding_is_scored_by_an_evaluator():
  protonet = metajax.protonet(tanh_classifier(), ways=WAYS)
  probe = metajax.linear_probe(tanh_classifier(), ways=WAYS)
  params = metajax.algorithms.transfer.embedding_params(probe, protonet.init())
  metrics = metajax.evaluate_tasks(probe, params, classification_tasks(), jax.random.key(0))
  assert metrics["accuracy"].shape == (4,)
  with pytest.raises(ValueError, match="no 'embedding'"):
    metajax.algorithms.transfer.embedding_params(probe, {"w": jnp.zeros(3)})


def tiny_dataset(classes=6, per_class=4, side=4):
  rng = np.random.default_rng(0)
  prototypes = rng.integers(0, 255, size=(classes, side, side, 1))
  images = np.repeat(prototypes, per_class, axis=0) + rng.integers(-20, 20, (classes * per_class,
                                                                             side, side, 1))
  labels = np.repeat(np.arange(classes), per_class)
  return from_labels(np.clip(images, 0, 255).astype(np.uint8), labels,
                     [f"c{i}" for i in range(classes)])


def test_batch_sampler_labels_images_by_global_class():
  data = tiny_dataset()
  sampler = batch_sampler(data, classes=4, shots=2, queries=1, batch_size=3)
  batch = sampler.sample(jax.random.key(0))
  chex.assert_shape(batch.support_x, (3, 8, 4, 4, 1))
  chex.assert_shape(batch.query_y, (3, 4))
  table, counts = np.asarray(sampler.index_table), np.asarray(sampler.counts)
  class_of_row = np.zeros(len(sampler.images), int)
  for c in range(len(counts)):
    class_of_row[table[c, :counts[c]]] = c
  pixels = np.asarray(sampler.images, np.int64)
  for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
    flat = np.round(np.asarray(x).reshape(-1, 16) * 255).astype(np.int64)
    rows = [int(np.flatnonzero((pixels == image).all(axis=1))[0]) for image in flat]
    np.testing.assert_array_equal(class_of_row[rows], np.asarray(y).reshape(-1))
  # Each minibatch holds `classes` distinct classes, each with shots + queries distinct images.
  for b in range(3):
    assert len(set(np.asarray(batch.support_y[b]).tolist())) == 4
  part = sampler.sample_slice(jax.random.key(0), 1, 3)
  chex.assert_trees_all_close(part, jax.tree.map(lambda a: a[1:3], batch))
  with pytest.raises(ValueError, match="only 6 classes"):
    batch_sampler(data, classes=7, shots=1)


def test_pretraining_runs_in_the_meta_step_and_lowers_the_loss():
  data = tiny_dataset()
  embedding = metajax.from_function(
      lambda p, x: jnp.tanh(x.reshape(x.shape[0], -1) @ p["w"]),
      {"w": jax.random.normal(jax.random.key(0), (16, 8)) * 0.1})
  learner = metajax.pretrain(embedding, classes=6, features=8, evaluator="linear_probe",
                             ways=3)
  assert learner.name == "pretrain+linear_probe"
  sampler = batch_sampler(data, classes=6, shots=2, queries=1, batch_size=2)
  optimizer = optax.adam(0.05)
  step = metajax.make_meta_step(learner, optimizer, batching="map")
  state = metajax.init_meta_state(learner, optimizer)
  losses = []
  for i, batch in enumerate(sampler.iterate(jax.random.key(1), num_batches=30)):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
  # The cross-entropy is over all six classes (a check of task_loss against its definition).
  batch = jax.tree.map(lambda a: a[0], sampler.sample(jax.random.key(2)))
  loss, _ = learner.task_loss(state.params, batch, jax.random.key(0), jnp.zeros([], jnp.int32))
  x = jnp.concatenate([batch.support_x, batch.query_x])
  y = jnp.concatenate([batch.support_y, batch.query_y])
  logits = (embedding.apply(state.params["embedding"], {}, x)[0] @ state.params["classifier"]["w"]
            + state.params["classifier"]["b"])
  np.testing.assert_allclose(loss, -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]),
                             rtol=1e-5)
  with pytest.raises(ValueError, match=r"\[0, ways\) = \[0, 6\)"):
    learner.check_task(metajax.Task(batch.support_x[None], batch.support_y[None] + 6,
                                    batch.query_x[None], batch.query_y[None]))


def multitask_setup(weighting="sum", weights=None):
  keys = jax.random.split(jax.random.key(0), 4)
  trunk = metajax.models.mlp_model([8], 6, keys[0], input_dim=4)
  heads = {"letters": metajax.models.mlp_model([], 3, keys[1], input_dim=6),
           "digits": metajax.models.mlp_model([], 5, keys[2], input_dim=6),
           "value": (metajax.models.mlp_model([], 1, keys[3], input_dim=6), "mse")}
  rng = np.random.default_rng(0)
  batch = {"letters": (rng.normal(size=(7, 4)), rng.integers(0, 3, 7)),
           "digits": (rng.normal(size=(9, 4)), rng.integers(0, 5, 9)),
           "value": (rng.normal(size=(5, 4)), rng.normal(size=(5, 1)))}
  batch = {k: (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32 if k != "value"
                                                         else jnp.float32))
           for k, (x, y) in batch.items()}
  learner = metajax.multitask(trunk, heads=heads, loss_weights=weights, weighting=weighting)
  return trunk, heads, learner, batch


def test_multitask_gradient_is_the_weighted_sum_of_single_task_gradients():
  weights = {"letters": 0.5, "digits": 2.0, "value": 1.5}
  trunk, heads, learner, batch = multitask_setup(weights=weights)
  params = learner.init()
  grads, metrics = jax.jit(learner.grad)(params, batch)
  expected = jax.tree.map(jnp.zeros_like, params)
  total = 0.0
  for name, head in heads.items():
    single = metajax.multitask(trunk, heads={name: head})
    single_params = {"trunk": params["trunk"], "heads": {name: params["heads"][name]}}
    single_grads, single_metrics = jax.jit(single.grad)(single_params, {name: batch[name]})
    total += weights[name] * single_metrics["loss"]
    expected["trunk"] = jax.tree.map(lambda a, b, w=weights[name]: a + w * b, expected["trunk"],
                                     single_grads["trunk"])
    expected["heads"][name] = jax.tree.map(lambda g, w=weights[name]: w * g,
                                           single_grads["heads"][name])
  chex.assert_trees_all_close(grads, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["loss"], total, rtol=1e-6)
  assert {"letters/accuracy", "digits/accuracy", "value/loss"} <= set(metrics)


def test_uncertainty_weighting_follows_kendall_et_al():
  _, _, learner, batch = multitask_setup(weighting="uncertainty")
  params = learner.init()
  params["log_variance"] = {"letters": jnp.asarray(0.3), "digits": jnp.asarray(-0.2),
                            "value": jnp.asarray(0.7)}
  _, metrics = learner.loss(params, batch)
  expected = sum(factor * np.exp(-s) * float(metrics[f"{name}/loss"]) + 0.5 * s
                 for name, s, factor in (("letters", 0.3, 1.0), ("digits", -0.2, 1.0),
                                         ("value", 0.7, 0.5)))
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
  # d total / d s_t = -factor exp(-s_t) L_t + 1/2: zero where sigma^2 = factor * L_t (their Eq.).
  grads, _ = learner.grad(params, batch)
  np.testing.assert_allclose(grads["log_variance"]["value"],
                             -0.5 * np.exp(-0.7) * float(metrics["value/loss"]) + 0.5, rtol=1e-5)


def test_multitask_step_compiles_once_and_learns():
  _, _, learner, batch = multitask_setup()
  traces = []
  grad = learner.grad
  learner = learner._replace(grad=lambda *a: traces.append(1) or grad(*a))
  optimizer = optax.adam(0.05)
  step = multitask_step(learner, optimizer)
  state = init_multitask_state(learner, optimizer)
  first = None
  for _ in range(60):
    state, metrics = step(state, batch)
    first = first if first is not None else float(metrics["loss"])
  assert float(metrics["loss"]) < 0.3 * first
  assert len(traces) == 1, "the joint step retraced"
  with pytest.raises(ValueError, match="exactly the tasks"):
    step(state, {"letters": batch["letters"]})
  with pytest.raises(TypeError, match="integer"):
    learner.check_batch({**batch, "digits": (batch["digits"][0],
                                             batch["digits"][1].astype(jnp.float32))})
