"""Backbones: output shapes of Conv-4 and ResNet-12, and BatchNorm's batch statistics."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from metajax.models import conv4_model, resnet12_model
from metajax.models.conv4 import Conv4


def output_shape(model, x_shape):
  return jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=True)[0], model.params,
                        model.state, jax.ShapeDtypeStruct(x_shape, jnp.float32)).shape


@pytest.mark.parametrize(
    "input_shape, pooling, features",
    [((28, 28, 1), "max", 64), ((28, 28, 1), "stride", 2 * 2 * 64),
     ((84, 84, 3), "max", 5 * 5 * 64), ((84, 84, 3), "stride", 6 * 6 * 64)],
)
def test_conv4_shapes(input_shape, pooling, features):
  key = jax.random.key(0)
  head = conv4_model(5, key, input_shape=input_shape, pooling=pooling)
  embed = conv4_model(None, key, input_shape=input_shape, pooling=pooling)
  assert output_shape(head, (3, *input_shape)) == (3, 5)
  assert output_shape(embed, (3, *input_shape)) == (3, features)
  assert "head" in head.params and "head" not in embed.params


def test_conv4_feature_maps_for_relation_network():
  model = conv4_model(None, jax.random.key(0), input_shape=(84, 84, 3), pooled_blocks=2,
                      flatten=False)
  assert output_shape(model, (2, 84, 84, 3)) == (2, 21, 21, 64)


def test_resnet12_shapes():
  key = jax.random.key(0)
  default = resnet12_model(5, key)
  assert output_shape(default, (2, 84, 84, 3)) == (2, 5)
  assert default.params["blocks"][3]["convs"][2]["kernel"].shape == (3, 3, 640, 640)
  embed = resnet12_model(None, key, global_pool=True)
  assert output_shape(embed, (2, 84, 84, 3)) == (2, 640)
  small = resnet12_model(None, key, input_shape=(28, 28, 1), widths=(4, 4, 4, 8))
  out, _ = small.apply(small.params, small.state, jnp.ones((2, 28, 28, 1)), train=True)
  chex.assert_shape(out, (2, 8))
  chex.assert_tree_all_finite(out)


@pytest.mark.parametrize("factory", [
    lambda: conv4_model(None, jax.random.key(0), input_shape=(16, 16, 1), filters=4),
    lambda: resnet12_model(None, jax.random.key(0), input_shape=(16, 16, 1), widths=(4,) * 4),
])
def test_batch_norm_uses_batch_statistics_in_train_mode(factory):
  model = factory()
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 1))
  other = x.at[1:].set(5.0 * jax.random.normal(jax.random.key(2), (3, 16, 16, 1)) + 3.0)
  apply = jax.jit(model.apply, static_argnames="train")
  train_x, new_state = apply(model.params, model.state, x, train=True)
  train_other, _ = apply(model.params, model.state, other, train=True)
  eval_x, eval_state = apply(model.params, model.state, x, train=False)
  eval_other, _ = apply(model.params, model.state, other, train=False)
  # Train mode: example 0's output depends on the rest of the batch; eval mode: it does not.
  assert not np.allclose(train_x[0], train_other[0], atol=1e-4)
  np.testing.assert_allclose(eval_x[0], eval_other[0], rtol=1e-5, atol=1e-6)
  # Train mode updates the running statistics; eval mode leaves them alone.
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), model.state, new_state)
  assert any(jax.tree.leaves(changed))
  chex.assert_trees_all_close(eval_state, model.state)


def test_conv4_batch_norm_normalises_over_the_batch():
  module = Conv4(None, input_shape=(16, 16, 1), filters=4, rngs=nnx.Rngs(0))
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (6, 16, 16, 1))
  pre = module.norms[0](module.convs[0](x))  # a fresh NNX BatchNorm runs on batch statistics
  chex.assert_trees_all_close(pre.mean(axis=(0, 1, 2)), jnp.zeros(4), atol=1e-4)
  chex.assert_trees_all_close(pre.var(axis=(0, 1, 2)), jnp.ones(4), atol=1e-2)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 5, 2)])
def test_max_pool_matches_reduce_window_to_second_order(shape, padding):
  from metajax.models._pool import max_pool_2x2

  x = jax.random.normal(jax.random.key(0), shape)
  x = x.at[:, :2, :2].set(0.5)  # a window of ties: both must pick the first element
  reference = lambda x: nnx.max_pool(x, (2, 2), strides=(2, 2), padding=padding)
  weights = jax.random.normal(jax.random.key(1), reference(x).shape)
  direction = jax.random.normal(jax.random.key(2), shape)

  def second_order(pool):
    loss = lambda x: jnp.sum(jnp.sin(pool(x) * weights))
    return jax.grad(lambda x: jnp.vdot(jax.grad(loss)(x), direction))(x)

  ours = lambda x: max_pool_2x2(x, padding)
  np.testing.assert_array_equal(ours(x), reference(x))
  np.testing.assert_array_equal(jax.grad(lambda x: jnp.vdot(ours(x), weights))(x),
                                jax.grad(lambda x: jnp.vdot(reference(x), weights))(x))
  np.testing.assert_allclose(second_order(ours), second_order(reference), rtol=1e-5, atol=1e-6)
  assert np.abs(second_order(ours)).max() > 0
