"""MAML++ per-step BatchNorm weights (BNWB) and running statistics (BNRS), against hand computation.

The hand computations below re-implement the tiny network (Linear -> BatchNorm -> tanh ->
Linear, ``_tiny.bn_classifier``) and the inner loop in plain ``jax.numpy``; only the
parameters are read from the learner.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tiny import bn_classifier, classification_tasks, first, tanh_classifier

import metajax
from metajax.algorithms import _gradient_based
from metajax.algorithms.maml_plus_plus import multi_step_loss_weights
from metajax.core.meta_step import meta_update
from metajax.testing import directional_derivatives

EPS = 1e-5  # the BatchNorm epsilon of bn_classifier
MOMENTUM = 0.9


def hidden(model, x):
  return x @ model["body"]["kernel"] + model["body"]["bias"]


def net(model, bn, x, stats=None):
  """The classifier by hand: BatchNorm weights ``bn=(gamma, beta)``, or the model's own when
  None; batch statistics, or ``stats=(mean, var)`` running ones."""
  gamma, beta = (model["norm"]["scale"], model["norm"]["bias"]) if bn is None else bn
  z = hidden(model, x)
  mean, var = (z.mean(0), z.var(0)) if stats is None else stats
  h = gamma * (z - mean) / jnp.sqrt(var + EPS) + beta
  return jnp.tanh(h) @ model["head"]["kernel"] + model["head"]["bias"]


def cross_entropy(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def hand_inner_loop(model, rates, bn, x, y, steps, stats=None):
  """``steps`` SGD steps with rate ``rates[...](k)`` at step k. Step k uses BatchNorm weights
  ``bn(k)`` (per-step copies, not adapted) or, when ``bn`` is None, the model's own, which the
  loop adapts as MAML does. Returns every theta_k."""
  thetas = [model]
  for k in range(steps):
    copy = None if bn is None else bn(k)
    s = None if stats is None else stats(k)
    loss = lambda m, copy=copy, s=s: cross_entropy(net(m, copy, x, s), y)
    grads = jax.grad(loss)(thetas[-1])
    thetas.append(jax.tree.map(lambda p, g, r, k=k: p - r(k) * g, thetas[-1], grads, rates))
  return thetas


def test_per_step_bn_weights_step_k_uses_copy_k():
  steps, lr = 2, 0.3
  learner = metajax.maml_plus_plus(bn_classifier(), inner_lr=lr, steps=steps,
                                   learn_inner_lr=False, per_step_bn_weights=True)
  params = learner.init()
  assert "scale" not in params["model"].get("norm", {})  # moved out of the adapted part
  # Distinctive copies: copy k's gamma and beta differ from each other and from the init.
  keys = jax.random.split(jax.random.key(5), 2)
  params["bn_weights"]["norm"]["scale"] = 1.0 + jax.random.normal(keys[0], (steps + 1, 6))
  params["bn_weights"]["norm"]["bias"] = jax.random.normal(keys[1], (steps + 1, 6))
  task = first(classification_tasks())

  def by_hand(p, copy_of):
    """Logits after ``steps`` updates, pass k using BatchNorm copy ``copy_of(k)``."""
    w = p["bn_weights"]["norm"]
    bn = lambda k: (w["scale"][copy_of(k)], w["bias"][copy_of(k)])
    rates = jax.tree.map(lambda _: (lambda k: lr), p["model"])
    thetas = hand_inner_loop(p["model"], rates, bn, task.support_x, task.support_y, steps)
    return net(thetas[-1], bn(steps), task.query_x)

  expected = jax.jit(lambda p: by_hand(p, lambda k: k))(params)
  adapted = jax.jit(learner.adapt)(params, task.support_x, task.support_y)
  logits = jax.jit(learner.predict)(params, adapted, task.query_x)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(jax.jit(learner.evaluate)(params, task)["loss"],
                             cross_entropy(expected, task.query_y), rtol=1e-5)
  # The check can fail: the same loop with copy 0 throughout gives other logits.
  same = jax.jit(lambda p: by_hand(p, lambda k: 0))(params)
  assert np.abs(np.asarray(same - logits)).max() > 1e-2


def test_per_step_bn_weights_meta_gradient_of_each_copy_matches_finite_differences():
  # Default LSLR and multi-step loss: the query after k updates uses copy k, so every copy
  # reaches the objective.
  learner = metajax.maml_plus_plus(bn_classifier(), inner_lr=0.3, steps=2,
                                   per_step_bn_weights=True, msl_anneal_steps=10)
  params = learner.init()
  task = first(classification_tasks())
  step = jnp.zeros([], jnp.int32)
  grads, _ = jax.jit(learner.task_grad)(params, task, None, step)
  loss = jax.jit(lambda p: learner.task_loss(p, task, None, step)[0])
  eps = 1e-2
  for k in range(3):
    grad_k = jax.tree.map(lambda g, k=k: g[k], grads["bn_weights"])
    assert float(optax.tree.norm(grad_k)) > 1e-4, f"copy {k} gets no meta-gradient"
    for d in range(2):
      # A random unit direction in copy k's scales and shifts only.
      leaves, treedef = jax.tree.flatten(params["bn_weights"])
      keys = jax.random.split(jax.random.key(10 * k + d), len(leaves))
      direction = jax.tree.map(jnp.zeros_like, params)
      direction["bn_weights"] = jax.tree.unflatten(treedef, [
          jnp.zeros_like(w).at[k].set(jax.random.normal(key, w.shape[1:]))
          for w, key in zip(leaves, keys)])
      norm = optax.tree.norm(direction)
      direction = jax.tree.map(lambda v, norm=norm: v / norm, direction)
      shifted = lambda sign, direction=direction: jax.tree.map(
          lambda p, v: p + sign * eps * v, params, direction)
      numeric = (float(loss(shifted(1.0))) - float(loss(shifted(-1.0)))) / (2 * eps)
      analytic = float(optax.tree.vdot(grads, direction))
      np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-4)
  # And along random directions in every meta-parameter.
  analytic, numeric = directional_derivatives(loss, params, jax.random.key(1), eps=eps,
                                              grad=grads)
  np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-4)


def test_per_step_running_stats_are_the_ema_of_task_averaged_batch_statistics():
  """After T meta-steps, copy k holds the EMA of the task-averaged batch statistics of the
  passes with theta_k (support passes for k < steps, the query pass for k = steps); evaluation
  normalises by them. (The contract suite checks that every batching mode agrees.)"""
  steps, meta_steps = 2, 3
  learner = metajax.maml_plus_plus(bn_classifier(), inner_lr=0.3, steps=steps,
                                   per_step_bn_stats=True, running_stats_at_test=True,
                                   msl_anneal_steps=10)
  assert learner.state_keys == ("bn_running_stats",)
  # Adam: were the statistics fed to it, its sign-like update would move them by ~lr.
  optimizer = optax.adam(1e-2)
  meta_step = metajax.make_meta_step(learner, optimizer, batching="vmap")
  state = metajax.init_meta_state(learner, optimizer)
  tasks = classification_tasks(batch=4)

  @jax.jit
  def batch_stats_by_hand(p, task):
    # No per-step weights: the inner loop adapts the model's own BatchNorm scale and shift.
    rates = jax.tree.map(lambda r: (lambda k, r=r: r[k]), p["inner_lr"])
    thetas = hand_inner_loop(p["model"], rates, None, task.support_x, task.support_y, steps)
    z = [hidden(thetas[k], task.support_x) for k in range(steps)]
    z.append(hidden(thetas[steps], task.query_x))
    return jnp.stack([zk.mean(0) for zk in z]), jnp.stack([zk.var(0) for zk in z])

  mean, var = np.zeros((steps + 1, 6)), np.ones((steps + 1, 6))
  for t in range(meta_steps):
    per_task = [batch_stats_by_hand(state.params, jax.tree.map(lambda a, i=i: a[i], tasks))
                for i in range(4)]
    mean = MOMENTUM * mean + (1 - MOMENTUM) * np.mean([m for m, _ in per_task], axis=0)
    var = MOMENTUM * var + (1 - MOMENTUM) * np.mean([v for _, v in per_task], axis=0)
    state, _ = meta_step(state, tasks, jax.random.key(t))
  stats = state.params["bn_running_stats"]["norm"]
  np.testing.assert_allclose(stats["mean"], mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["var"], var, rtol=1e-4, atol=1e-5)
  assert np.abs(np.diff(mean, axis=0)).max() > 1e-3  # the copies do differ

  # Evaluation normalises the pass with theta_k by copy k of the running statistics.
  params = state.params
  task = first(tasks)

  @functools.partial(jax.jit, static_argnums=1)
  def logits_by_hand(p, n_steps):
    running = lambda k: (p["bn_running_stats"]["norm"]["mean"][k],
                         p["bn_running_stats"]["norm"]["var"][k])
    rates = jax.tree.map(lambda r: (lambda k, r=r: r[k]), p["inner_lr"])
    thetas = hand_inner_loop(p["model"], rates, None, task.support_x, task.support_y, n_steps,
                             stats=running)
    return net(thetas[-1], None, task.query_x, running(n_steps))

  adapted = jax.jit(learner.adapt)(params, task.support_x, task.support_y)
  predict = jax.jit(learner.predict)
  logits = predict(params, adapted, task.query_x)
  np.testing.assert_allclose(logits, logits_by_hand(params, steps), rtol=1e-4, atol=1e-5)
  # An adaptation curve's point after 1 step: the query pass after 1 update uses copy 1.
  expected = logits_by_hand(params, 1)
  predict_task = jax.jit(lambda p, t: learner.predict_task(
      p, t.support_x, t.support_y, t.query_x, steps=1))
  np.testing.assert_allclose(predict_task(params, task), expected, rtol=1e-4, atol=1e-5)
  evaluate = jax.jit(lambda p, t: learner.evaluate(p, t, steps=1))
  np.testing.assert_allclose(evaluate(params, task)["loss"],
                             cross_entropy(expected, task.query_y), rtol=1e-5)
  # A query's prediction no longer depends on the other queries, unlike transductive BatchNorm.
  np.testing.assert_allclose(predict(params, adapted, task.query_x[:2]), logits[:2],
                             rtol=1e-5, atol=1e-6)
  transductive = metajax.maml_plus_plus(bn_classifier(), inner_lr=0.3, steps=steps)
  plain = {k: v for k, v in params.items() if k != "bn_running_stats"}
  adapted = jax.jit(transductive.adapt)(plain, task.support_x, task.support_y)
  predict = jax.jit(transductive.predict)
  both = predict(plain, adapted, task.query_x)
  assert np.abs(np.asarray(predict(plain, adapted, task.query_x[:2]) - both[:2])).max() > 1e-3
  # Without running_stats_at_test (the default, as the authors' code) the statistics are kept
  # but the test passes normalise by the batch's own: the transductive learner's predictions.
  by_batch = metajax.maml_plus_plus(bn_classifier(), inner_lr=0.3, steps=steps,
                                    per_step_bn_stats=True, msl_anneal_steps=10)
  adapted = jax.jit(by_batch.adapt)(params, task.support_x, task.support_y)
  np.testing.assert_allclose(jax.jit(by_batch.predict)(params, adapted, task.query_x), both,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(by_batch.evaluate)(params, task)["loss"],
                             cross_entropy(both, task.query_y), rtol=1e-5)


def test_both_options_train_under_jit_and_checkpoint_round_trip(tmp_path):
  """Resume: the statistics are meta-parameters, saved and restored with the state."""
  from metajax.train.checkpoint import Checkpointer

  learner = metajax.maml_plus_plus(bn_classifier(), inner_lr=0.3, steps=2,
                                   per_step_bn_weights=True, per_step_bn_stats=True)
  optimizer = optax.adam(1e-2)
  meta_step = metajax.make_meta_step(learner, optimizer, batching="map", donate=False)
  state = metajax.init_meta_state(learner, optimizer)
  tasks = classification_tasks()
  state, _ = meta_step(state, tasks, jax.random.key(0))
  checkpointer = Checkpointer(tmp_path / "ckpt")
  checkpointer.save(1, state)
  restored = checkpointer.restore(1, metajax.init_meta_state(learner, optimizer))
  checkpointer.close()
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  straight, _ = meta_step(state, tasks, jax.random.key(1))
  resumed, _ = meta_step(restored, tasks, jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, resumed, straight)


def test_defaults_are_bit_identical_to_the_plain_gradient_based_builder():
  model = bn_classifier()
  task = first(classification_tasks())
  step = jnp.asarray(3, jnp.int32)
  old = _gradient_based.build(
      model, name="maml_plus_plus", loss="cross_entropy", steps=2, eval_steps=None,
      first_order=False, remat=False, batch_norm="transductive", adapt_filter=None,
      init_extra=lambda adapted: {"inner_lr": jax.tree.map(
          lambda p: jnp.full([2], 0.3, jnp.float32), adapted)},
      inner_optimizer=lambda mp, n: metajax.core.inner_loop.learned_sgd(
          jax.tree.map(lambda lr, p: lr.reshape((2,) + (1,) * jnp.ndim(p)),
                       mp["inner_lr"], mp["model"]), per_step=True),
      step_weights=lambda s, n: multi_step_loss_weights(s, n, 10_000), masks=True)
  for new in (metajax.maml_plus_plus(model, inner_lr=0.3, steps=2),
              metajax.maml_plus_plus(model, inner_lr=0.3, steps=2, per_step_bn_weights=False,
                                     per_step_bn_stats=False)):
    assert new.state_keys == ()
    params = new.init()
    jax.tree.map(np.testing.assert_array_equal, params, old.init())
    jax.tree.map(np.testing.assert_array_equal, jax.jit(new.task_grad)(params, task, None, step),
                 jax.jit(old.task_grad)(params, task, None, step))
    jax.tree.map(np.testing.assert_array_equal, jax.jit(new.evaluate)(params, task),
                 jax.jit(old.evaluate)(params, task))

  # The meta-step traces the same program as before state keys existed (the update below is
  # the meta-step's body before them), so its results are bit-identical.
  optimizer = optax.adam(1e-2)
  learner = metajax.maml_plus_plus(model, inner_lr=0.3, steps=2)
  mean_grads = metajax.batched_task_grads(learner, batching="vmap")

  def update_before(state, tasks, key):
    grads, metrics = mean_grads(state.params, tasks, key, state.step)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return metajax.MetaTrainState(state.step + 1, params, opt_state), metrics

  args = (metajax.init_meta_state(learner, optimizer), classification_tasks(), jax.random.key(0))
  update_now = meta_update(learner, optimizer, batching="vmap")
  assert str(jax.make_jaxpr(update_now)(*args)) == str(jax.make_jaxpr(update_before)(*args))


def test_bad_option_combinations_raise_naming_the_fix():
  with pytest.raises(ValueError, match="model.state is empty.*drop per_step_bn_stats"):
    metajax.maml_plus_plus(tanh_classifier(), per_step_bn_stats=True)
  with pytest.raises(ValueError, match="found no BatchNorm.*drop per_step_bn_weights"):
    metajax.maml_plus_plus(tanh_classifier(), per_step_bn_weights=True)
  with pytest.raises(ValueError, match="batch_norm='frozen'.*use batch_norm='transductive'"):
    metajax.maml_plus_plus(bn_classifier(), per_step_bn_stats=True, batch_norm="frozen")
  with pytest.raises(ValueError, match="only per_step_bn_stats=True keeps; set per_step_bn"):
    metajax.maml_plus_plus(bn_classifier(), running_stats_at_test=True)
  with pytest.raises(ValueError, match="eval_steps must equal steps=2"):
    metajax.maml_plus_plus(bn_classifier(), steps=2, learn_inner_lr=False, eval_steps=3,
                           per_step_bn_weights=True)
  learner = metajax.maml_plus_plus(bn_classifier(), steps=2, per_step_bn_stats=True)
  task = first(classification_tasks())
  with pytest.raises(ValueError, match="can be at most 2, got steps=3; lower the steps"):
    learner.adapt(learner.init(), task.support_x, task.support_y, steps=3)
