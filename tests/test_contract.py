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
from _tiny import classification_tasks, first, tanh_classifier

import metajax
from metajax.testing import check_meta_gradient

ALGORITHMS = {
    "maml": lambda m: metajax.maml(m, inner_lr=0.5, steps=2),
    "fomaml": lambda m: metajax.fomaml(m, inner_lr=0.5, steps=2),
    "anil": lambda m: metajax.anil(m, inner_lr=0.5, steps=2),
    "meta_sgd": lambda m: metajax.meta_sgd(m, inner_lr=0.5, steps=2),
    "maml_plus_plus": lambda m: metajax.maml_plus_plus(m, inner_lr=0.5, steps=2),
    "reptile": lambda m: metajax.reptile(m, inner_lr=0.1, steps=3),
}
# Algorithms whose task_grad is not the gradient of task_loss (checked elsewhere).
NOT_A_GRADIENT = {"fomaml", "reptile"}
OUTER = {"reptile": lambda: metajax.reptile_outer_optimizer(0.5)}


def build(name):
  learner = ALGORITHMS[name](tanh_classifier())
  optimizer = OUTER.get(name, lambda: optax.adam(1e-2))()
  return learner, optimizer


@pytest.fixture(params=sorted(ALGORITHMS))
def algorithm(request):
  return request.param


@pytest.mark.parametrize("batching", ["vmap", "map", "chunked", "unrolled"])
def test_compiles_once_finite_and_stable(algorithm, batching):
  learner, optimizer = build(algorithm)
  traces = []
  task_grad = learner.task_grad

  def counted_task_grad(*args):
    traces.append(1)
    return task_grad(*args)

  learner = learner._replace(task_grad=counted_task_grad)
  meta_step = metajax.make_meta_step(learner, optimizer, batching=batching, chunk_size=2)
  state = metajax.init_meta_state(learner, optimizer)
  shapes = jax.tree.map(lambda x: (x.shape, x.dtype), state)
  tasks = classification_tasks(batch=4)
  state, _ = meta_step(state, tasks, jax.random.key(0))
  traced_by_first_call = len(traces)
  assert traced_by_first_call >= 1
  for i in range(1, 4):
    state, metrics = meta_step(state, tasks, jax.random.key(i))
    chex.assert_tree_all_finite((state.params, metrics))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == shapes
  assert len(traces) == traced_by_first_call, "the meta-step retraced on a later call"
  assert int(state.step) == 4
  assert {"loss", "grad_norm"} <= set(metrics)


def test_vmap_meta_step_traces_task_grad_once():
  learner, optimizer = build("maml")
  learner = learner._replace(task_grad=chex.assert_max_traces(learner.task_grad, n=1))
  meta_step = metajax.make_meta_step(learner, optimizer, batching="vmap")
  state = metajax.init_meta_state(learner, optimizer)
  for i in range(3):
    state, _ = meta_step(state, classification_tasks(), jax.random.key(i))


def test_batching_modes_agree(algorithm):
  learner, optimizer = build(algorithm)
  tasks = classification_tasks(batch=4)
  results = {}
  for batching in ("vmap", "map", "chunked", "unrolled"):
    state = metajax.init_meta_state(learner, optimizer)
    meta_step = metajax.make_meta_step(learner, optimizer, batching=batching, chunk_size=2)
    results[batching] = meta_step(state, tasks, jax.random.key(0))
  for batching in ("map", "chunked", "unrolled"):
    chex.assert_trees_all_close(results[batching], results["vmap"], rtol=1e-4, atol=1e-5)


def test_meta_gradient_matches_finite_differences(algorithm):
  if algorithm in NOT_A_GRADIENT:
    pytest.skip(f"{algorithm}'s update is not the gradient of task_loss; see test_maml_family.py")
  learner, _ = build(algorithm)
  check_meta_gradient(learner, learner.init(), first(classification_tasks()), jax.random.key(0),
                      directions=3, eps=1e-2, rtol=2e-2, atol=2e-4)


def test_meta_training_improves_held_out_tasks(algorithm):
  learner, optimizer = build(algorithm)
  meta_step = metajax.make_meta_step(learner, optimizer)
  state = metajax.init_meta_state(learner, optimizer)
  held_out = classification_tasks(key=99, batch=16)
  before = metajax.evaluate_tasks(learner, state.params, held_out, jax.random.key(0))["loss"]
  for i in range(40):
    state, _ = meta_step(state, classification_tasks(key=i, batch=4), jax.random.key(i))
  after = metajax.evaluate_tasks(learner, state.params, held_out, jax.random.key(0))["loss"]
  assert after.mean() < before.mean(), (before.mean(), after.mean())


def test_evaluate_reports_accuracy_in_unit_interval(algorithm):
  learner, _ = build(algorithm)
  metrics = metajax.evaluate_tasks(learner, learner.init(), classification_tasks(),
                                   jax.random.key(0))
  assert metrics["accuracy"].shape == (4,)
  assert np.all((metrics["accuracy"] >= 0) & (metrics["accuracy"] <= 1))


def test_auto_batching_picks_vmap_for_dense_models_on_cpu():
  learner, optimizer = build("maml")
  meta_step = metajax.make_meta_step(learner, optimizer)
  meta_step(metajax.init_meta_state(learner, optimizer), classification_tasks(), jax.random.key(0))
  expected = "vmap"  # no convolution; GPU/TPU always vmap
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
