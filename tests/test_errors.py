"""Bad input gets a clear error naming the rule, the value and the fix."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tiny import classification_tasks, tanh_classifier

import metajax


def step_for(learner):
  optimizer = optax.adam(1e-3)
  return metajax.make_meta_step(learner, optimizer), metajax.init_meta_state(learner, optimizer)


def test_support_and_query_feature_shapes_must_match():
  meta_step, state = step_for(metajax.maml(tanh_classifier()))
  tasks = classification_tasks()
  tasks = tasks._replace(query_x=np.zeros(tasks.query_x.shape[:2] + (5,), np.float32))
  with pytest.raises(ValueError, match=r"same feature shape.*\(4,\).*\(5,\)"):
    meta_step(state, tasks, jax.random.key(0))


@pytest.mark.parametrize("bad", [-1, 3, 7])
def test_labels_must_lie_in_range_of_ways(bad):
  meta_step, state = step_for(metajax.maml(tanh_classifier()))
  tasks = classification_tasks()
  query_y = tasks.query_y.copy()
  query_y[0, 0] = bad
  with pytest.raises(ValueError, match=r"query_y must lie in \[0, ways\) = \[0, 3\)"):
    meta_step(state, tasks._replace(query_y=query_y), jax.random.key(0))


def test_float_labels_are_rejected_for_classification():
  meta_step, state = step_for(metajax.maml(tanh_classifier()))
  tasks = classification_tasks()
  with pytest.raises(TypeError, match="integer class labels"):
    meta_step(state, tasks._replace(support_y=tasks.support_y.astype(np.float32)),
              jax.random.key(0))


@pytest.mark.parametrize("steps,error,match", [
    (-1, ValueError, "steps must be >= 0, got -1"),
    (1.5, TypeError, "steps must be a Python int.*1.5"),
    (True, TypeError, "steps must be a Python int"),
    ("3", TypeError, "steps must be a Python int"),
])
def test_steps_must_be_non_negative_integers(steps, error, match):
  for factory in (metajax.maml, metajax.meta_sgd, metajax.reptile):
    with pytest.raises(error, match=match):
      factory(tanh_classifier(), steps=steps)


def test_integer_parameter_leaves_are_rejected():
  with pytest.raises(TypeError, match=r"params\['count'\] has dtype int32"):
    metajax.from_function(lambda p, x: x * p["scale"], {"scale": jnp.ones(()),
                                                        "count": jnp.zeros((), jnp.int32)})


def test_model_output_must_match_the_loss():
  # A regression model with 3 outputs for 1-d targets: shapes, not broadcasting.
  model = metajax.from_function(lambda p, x: x @ p["w"], {"w": jnp.ones((1, 3))})
  learner = metajax.maml(model, loss="mse")
  tasks = metajax.data.sinusoid_tasks(jax.random.key(0), batch_size=2, shots=5)
  meta_step, state = step_for(learner)
  with pytest.raises(ValueError, match=r"outputs shaped like the targets.*\(5, 3\).*\(5, 1\)"):
    meta_step(state, tasks, jax.random.key(0))


def test_classifier_output_must_be_two_dimensional():
  model = metajax.from_function(lambda p, x: (x @ p["w"])[..., None], {"w": jnp.ones((4, 3))})
  meta_step, state = step_for(metajax.maml(model))
  with pytest.raises(ValueError, match=r"shape \[n, ways\]"):
    meta_step(state, classification_tasks(), jax.random.key(0))


def test_unknown_options_are_named():
  with pytest.raises(ValueError, match="batching must be one of"):
    metajax.make_meta_step(metajax.maml(tanh_classifier()), optax.sgd(1.0), batching="pmap")
  with pytest.raises(ValueError, match="batch_norm must be one of"):
    metajax.maml(tanh_classifier(), batch_norm="running")
  with pytest.raises(ValueError, match="unknown loss 'hinge'"):
    metajax.maml(tanh_classifier(), loss="hinge")
  with pytest.raises(TypeError, match="must be a metajax.Model"):
    metajax.maml(lambda p, x: x)


def test_chunk_size_must_divide_the_batch():
  learner = metajax.maml(tanh_classifier())
  optimizer = optax.sgd(0.1)
  meta_step = metajax.make_meta_step(learner, optimizer, batching="chunked", chunk_size=3)
  with pytest.raises(ValueError, match="multiple of chunk_size=3"):
    meta_step(metajax.init_meta_state(learner, optimizer), classification_tasks(batch=4),
              jax.random.key(0))
