"""The matmul convolution (models._conv): values and gradients of every order equal XLA's."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from jax import lax
from jax.test_util import check_grads

import metajax
from metajax.models import _conv

GEOMETRIES = [  # (size, stride, padding): odd/even SAME pads (Omniglot), stride 1, VALID.
    (7, 2, "SAME"), (4, 2, "SAME"), (6, 1, "SAME"), (6, 1, "VALID"), (5, 2, [(2, 0), (1, 1)]),
]


def _pair(stride, padding):
  ref = lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), padding,
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
  mine = lambda x, w: _conv.conv2d(x, w, (stride, stride), padding)
  return ref, mine


def _inputs(size, seed=0):
  kx, kw = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, (2, size, size, 3)), jax.random.normal(kw, (3, 3, 3, 4)) * 0.3


@pytest.mark.parametrize("size,stride,padding", GEOMETRIES)
def test_values_and_gradients_match_xla(size, stride, padding):
  ref, mine = _pair(stride, padding)
  x, w = _inputs(size)
  chex.assert_trees_all_close(mine(x, w), ref(x, w), atol=1e-5, rtol=1e-5)

  def second_order(conv):
    # A MAML-shaped second derivative: the gradient of a function of the (x, w) gradients.
    inner = jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))), argnums=(0, 1))
    return jax.grad(lambda x, w: sum(jnp.sum(g ** 2) for g in inner(x, w)), argnums=(0, 1))

  chex.assert_trees_all_close(jax.grad(lambda *a: jnp.sum(jnp.sin(mine(*a))), (0, 1))(x, w),
                              jax.grad(lambda *a: jnp.sum(jnp.sin(ref(*a))), (0, 1))(x, w),
                              atol=1e-4, rtol=1e-4)
  chex.assert_trees_all_close(second_order(mine)(x, w), second_order(ref)(x, w),
                              atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("size,stride,padding", GEOMETRIES[:3])
def test_check_grads_second_order(size, stride, padding):
  _, mine = _pair(stride, padding)
  x, w = _inputs(size, seed=1)
  check_grads(mine, (x, w), order=2, modes=("rev",), atol=5e-2, rtol=5e-2)


def test_under_vmap_with_per_task_kernels():
  ref, mine = _pair(2, "SAME")
  x, w = _inputs(7)
  xs, ws = jnp.stack([x, -x]), jnp.stack([w, 2 * w])
  grad = lambda conv: jax.grad(lambda w, x: jnp.sum(conv(x, w) ** 2))
  chex.assert_trees_all_close(jax.vmap(grad(mine))(ws, xs), jax.vmap(grad(ref))(ws, xs),
                              atol=1e-3, rtol=1e-4)


def test_drop_in_falls_back_to_xla_for_other_convolutions():
  x, w = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 2, 4))
  kwargs = dict(dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)
  chex.assert_trees_all_close(_conv.conv_general_dilated(x, w, (1, 1), "SAME", **kwargs),
                              lax.conv_general_dilated(x, w, (1, 1), "SAME", **kwargs))
  with pytest.raises(ValueError, match="conv must be one of"):
    _conv.resolve("cudnn")


def test_maml_meta_gradient_equal_with_both_convolutions():
  tasks = metajax.Task(jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 1)),
                       jnp.array([[0, 1, 0, 1]] * 2),
                       jax.random.normal(jax.random.key(3), (2, 4, 16, 16, 1)),
                       jnp.array([[1, 0, 1, 0]] * 2))
  grads = {}
  for conv in ("xla", "matmul"):
    model = metajax.models.conv4_model(2, jax.random.key(1), input_shape=(16, 16, 1), filters=4,
                                       pooling="stride", conv=conv)
    learner = metajax.maml(model, inner_lr=0.5, steps=1)
    task_grads = metajax.batched_task_grads(learner, batching="map")
    grads[conv] = task_grads(learner.init(), tasks, jax.random.key(2), jnp.zeros([], jnp.int32))
  # Conv biases feed BatchNorm, which cancels them: their exact gradient is 0, so both are noise.
  for conv in grads:
    for block in grads[conv][0]["model"]["convs"].values():
      block.pop("bias")
  chex.assert_trees_all_close(grads["matmul"], grads["xla"], atol=1e-4, rtol=1e-3)


def test_remat_changes_memory_not_results():
  model = metajax.models.conv4_model(2, jax.random.key(1), input_shape=(8, 8, 1), filters=8,
                                     pooling="stride")
  tasks = metajax.Task(jax.random.normal(jax.random.key(0), (2, 8, 8, 8, 1)),
                       jnp.array([[0, 1] * 4] * 2), jnp.ones((2, 8, 8, 8, 1)),
                       jnp.array([[1, 0] * 4] * 2))
  optimizer = optax.sgd(0.1)
  out, temp = {}, {}
  for remat in (False, True):
    learner = metajax.maml(model, inner_lr=0.1, steps=8, remat=remat)
    state = metajax.init_meta_state(learner, optimizer)
    update = jax.jit(metajax.core.meta_step.meta_update(learner, optimizer, batching="map"))
    compiled = update.lower(state, tasks, jax.random.key(0)).compile()
    temp[remat] = compiled.memory_analysis().temp_size_in_bytes
    out[remat] = compiled(state, tasks, jax.random.key(0))[0].params
  chex.assert_trees_all_close(out[True], out[False], atol=1e-5, rtol=1e-5)
  assert temp[True] < temp[False]
