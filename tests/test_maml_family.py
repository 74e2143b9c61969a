"""Meta-gradients of the MAML family against closed forms and independent computations."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tiny import (
    classification_tasks,
    first,
    linear_regression_model,
    regression_task,
    tanh_classifier,
)

import metajax
from metajax.testing import check_meta_gradient

STEP = jnp.zeros([], jnp.int32)
KEY = jax.random.key(0)


def quadratic_pieces(task):
  """For L(w) = mean((Xw - y)^2): gradient and Hessian as numpy float64 closures."""
  def grad(x, y, w):
    return 2.0 / len(x) * x.T @ (x @ w - y)

  def hessian(x):
    return 2.0 / len(x) * x.T @ x

  sx, sy, qx, qy = (np.asarray(a, np.float64) for a in task[:4])
  return grad, hessian, sx, sy, qx, qy


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_meta_gradient_matches_closed_form_on_quadratic(steps):
  alpha = 0.1
  model = linear_regression_model()
  task = regression_task()
  learner = metajax.maml(model, inner_lr=alpha, steps=steps, loss="mse")
  params = learner.init()
  grads, _ = jax.jit(learner.task_grad)(params, task, KEY, STEP)

  grad, hessian, sx, sy, qx, qy = quadratic_pieces(task)
  w = np.asarray(params["model"]["w"], np.float64)
  for _ in range(steps):
    w = w - alpha * grad(sx, sy, w)
  jacobian = np.linalg.matrix_power(np.eye(len(w)) - alpha * hessian(sx), steps)
  expected = jacobian @ grad(qx, qy, w)
  np.testing.assert_allclose(grads["model"]["w"], expected, rtol=1e-4, atol=1e-5)
  # The second-order factor matters here, so a first-order answer would fail this test.
  assert np.abs(expected - grad(qx, qy, w)).max() > 1e-2


def test_fomaml_equals_gradient_at_adapted_point():
  alpha = 0.1
  model = linear_regression_model()
  task = regression_task()
  learner = metajax.fomaml(model, inner_lr=alpha, steps=2, loss="mse")
  params = learner.init()
  grads, _ = learner.task_grad(params, task, KEY, STEP)

  grad, _, sx, sy, qx, qy = quadratic_pieces(task)
  w = np.asarray(params["model"]["w"], np.float64)
  for _ in range(2):
    w = w - alpha * grad(sx, sy, w)
  np.testing.assert_allclose(grads["model"]["w"], grad(qx, qy, w), rtol=1e-4, atol=1e-5)


def test_fomaml_equals_stop_gradient_maml():
  model = tanh_classifier()
  task = first(classification_tasks())
  fomaml = metajax.fomaml(model, inner_lr=0.5, steps=2)
  params = fomaml.init()

  def stop_gradient_loss(p):
    adapted = p["model"]
    for _ in range(2):
      g = jax.lax.stop_gradient(jax.grad(lambda q: metajax.softmax_cross_entropy(
          model.apply(q, {}, task.support_x)[0], task.support_y))(adapted))
      adapted = jax.tree.map(lambda a, b: a - 0.5 * b, adapted, g)
    return metajax.softmax_cross_entropy(model.apply(adapted, {}, task.query_x)[0], task.query_y)

  grads, _ = fomaml.task_grad(params, task, KEY, STEP)
  chex.assert_trees_all_close(grads, jax.grad(stop_gradient_loss)(params), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", ["maml", "meta_sgd", "maml_plus_plus", "anil"])
def test_second_order_meta_gradient_matches_finite_differences(factory):
  model = tanh_classifier()
  task = first(classification_tasks())
  kwargs = {"inner_lr": 0.5, "steps": 2}
  learner = getattr(metajax, factory)(model, **kwargs)
  params = learner.init()
  check_meta_gradient(learner, params, task, KEY, directions=4, eps=1e-2, rtol=2e-2, atol=2e-4)
  # The same check must reject the first-order gradient (else it could not fail).
  if factory == "maml":
    first_order = metajax.fomaml(model, **kwargs)
    with pytest.raises(AssertionError, match="disagrees"):
      check_meta_gradient(learner._replace(task_grad=first_order.task_grad), params, task, KEY,
                          directions=4, eps=1e-2, rtol=2e-2, atol=2e-4)


def test_reptile_update_is_scaled_difference_to_adapted_weights():
  lr, epsilon, steps = 0.05, 0.5, 3
  model = linear_regression_model()
  tasks = jax.tree.map(lambda *xs: jnp.stack(xs), regression_task(1), regression_task(2))
  learner = metajax.reptile(model, inner_lr=lr, steps=steps, loss="mse",
                            inner_optimizer=optax.sgd(lr))
  optimizer = metajax.reptile_outer_optimizer(epsilon)
  state = metajax.init_meta_state(learner, optimizer)
  w0 = np.asarray(state.params["model"]["w"], np.float64)
  new_state, _ = metajax.make_meta_step(learner, optimizer)(state, tasks, KEY)

  grad = quadratic_pieces(regression_task())[0]
  adapted = []
  for i in range(2):
    sx, sy = (np.asarray(a[i], np.float64) for a in (tasks.support_x, tasks.support_y))
    w = w0.copy()
    for _ in range(steps):
      w = w - lr * grad(sx, sy, w)
    adapted.append(w)
  expected = w0 + epsilon * (np.mean(adapted, axis=0) - w0)
  np.testing.assert_allclose(new_state.params["model"]["w"], expected, rtol=1e-5, atol=1e-6)


def test_anil_leaves_body_unchanged_in_inner_loop_but_meta_learns_it():
  model = tanh_classifier()
  task = first(classification_tasks())
  learner = metajax.anil(model, inner_lr=0.5, steps=3)
  params = learner.init()
  adapted = learner.adapt(params, task.support_x, task.support_y)
  chex.assert_trees_all_equal(adapted["body"], params["model"]["body"])
  assert not np.allclose(adapted["head"]["w"], params["model"]["head"]["w"])
  grads, _ = learner.task_grad(params, task, KEY, STEP)
  assert float(jnp.abs(grads["model"]["body"]["w"]).max()) > 0


def test_anil_names_missing_head():
  with pytest.raises(ValueError, match="no top-level key"):
    metajax.anil(linear_regression_model(), head="classifier")


def test_meta_sgd_learning_rates_get_closed_form_gradient():
  model = linear_regression_model()
  task = regression_task()
  learner = metajax.meta_sgd(model, inner_lr=0.1, steps=1, loss="mse")
  params = learner.init()
  grads, _ = learner.task_grad(params, task, KEY, STEP)
  # L_q(w - a * g_s) => dL/da = -g_s * grad L_q(w').
  grad, _, sx, sy, qx, qy = quadratic_pieces(task)
  w = np.asarray(params["model"]["w"], np.float64)
  g_s = grad(sx, sy, w)
  expected = -g_s * grad(qx, qy, w - 0.1 * g_s)
  np.testing.assert_allclose(grads["inner_lr"]["w"], expected, rtol=1e-4, atol=1e-6)


def test_maml_plus_plus_learns_per_step_rates_and_weights_the_multi_step_loss():
  model = linear_regression_model()
  task = regression_task()
  steps = 3
  learner = metajax.maml_plus_plus(model, inner_lr=0.1, steps=steps, loss="mse",
                                   msl_anneal_steps=100)
  params = learner.init()
  assert params["inner_lr"]["w"].shape == (steps,)
  grads, _ = learner.task_grad(params, task, KEY, STEP)
  assert np.all(np.abs(grads["inner_lr"]["w"]) > 0)

  grad, _, sx, sy, qx, qy = quadratic_pieces(task)
  w = np.asarray(params["model"]["w"], np.float64)
  query_losses = []
  for _ in range(steps):
    w = w - 0.1 * grad(sx, sy, w)
    query_losses.append(np.mean((qx @ w - qy) ** 2))
  for step in (0, 50, 100, 1000):
    weights = np.asarray(metajax.algorithms.multi_step_loss_weights(step, steps, 100))
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
    loss, _ = learner.task_loss(params, task, KEY, jnp.asarray(step))
    np.testing.assert_allclose(loss, weights @ np.asarray(query_losses), rtol=1e-4)
  np.testing.assert_allclose(metajax.algorithms.multi_step_loss_weights(0, steps, 100),
                             np.full(steps, 1 / steps), rtol=1e-6)
  assert float(metajax.algorithms.multi_step_loss_weights(1000, steps, 100)[-1]) > 0.9


def test_adam_inner_loop_with_eps_root_gives_finite_meta_gradients():
  model = tanh_classifier()
  task = first(classification_tasks())
  learner = metajax.maml(model, steps=3, inner_optimizer=optax.adam(0.1, eps_root=1e-8))
  grads, metrics = learner.task_grad(learner.init(), task, KEY, STEP)
  chex.assert_tree_all_finite((grads, metrics))


def test_remat_changes_nothing_but_memory():
  model = tanh_classifier()
  task = first(classification_tasks())
  plain = metajax.maml(model, inner_lr=0.5, steps=4)
  remat = metajax.maml(model, inner_lr=0.5, steps=4, remat=True)
  params = plain.init()
  chex.assert_trees_all_close(plain.task_grad(params, task, KEY, STEP),
                              remat.task_grad(params, task, KEY, STEP), rtol=1e-5, atol=1e-6)


def test_more_test_time_steps_than_training_steps():
  model = tanh_classifier()
  tasks = classification_tasks()
  learner = metajax.maml(model, inner_lr=0.5, steps=1, eval_steps=5)
  params = learner.init()
  one = metajax.evaluate_tasks(learner, params, tasks, KEY, steps=1)["loss"].mean()
  five = metajax.evaluate_tasks(learner, params, tasks, KEY)["loss"].mean()
  assert five < one
