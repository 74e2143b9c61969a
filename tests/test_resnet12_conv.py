"""ResNet-12's ``conv=`` option: the matmul and XLA convolutions compute the same network."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.models import resnet12_model

SHAPE = (16, 16, 1)  # four 2x2 pools -> 1x1
WIDTHS = (4, 4, 4, 4)  # one kernel shape per kind: initialisation compiles few eager ops
# Both programs are compiled without LLVM's optimisation passes: the comparison is of the two
# lowerings of the same network, and the test stays a few seconds long.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@pytest.fixture(scope="module")
def models():
  return {conv: resnet12_model(3, jax.random.key(0), input_shape=SHAPE, widths=WIDTHS,
                               conv=conv) for conv in ("xla", "matmul")}


def _loss(model):
  def loss(params, x, y):
    logits, _ = model.apply(params, model.state, x, train=True)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
  return loss


def _assert_close(actual, expected, rel=2e-3):
  """Every leaf within ``rel`` of the leaf's largest magnitude.

  The paths sum in different orders; in float64 they agree to 1e-12, in float32 the first block's
  1x1 shortcut kernel (one input channel, gradient almost cancelled by BatchNorm) differs by
  ~6e-4 of its largest entry. A wrong padding, layout or transpose differs by O(1).
  """
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    scale = float(jnp.abs(e).max())
    assert scale > 1e-6, "a gradient leaf is zero: the comparison would be empty"
    np.testing.assert_allclose(a, e, rtol=0, atol=rel * scale)


def test_matmul_and_xla_convolutions_agree_in_value_and_gradient(models):
  x = jax.random.normal(jax.random.key(1), (3, *SHAPE))
  y = jnp.array([0, 1, 2])
  # Same key, same parameters: the option changes how the convolution runs, not the network.
  chex.assert_trees_all_equal(models["xla"].params, models["matmul"].params)
  params = models["xla"].params
  results = {}
  for conv, model in models.items():
    step = jax.jit(jax.value_and_grad(_loss(model), argnums=(0, 1)))
    results[conv] = step.lower(params, x, y).compile(FAST_COMPILE)(params, x, y)
  loss_xla, grads_xla = results["xla"]
  loss_matmul, grads_matmul = results["matmul"]
  assert np.isfinite(loss_xla) and loss_xla > 0
  np.testing.assert_allclose(loss_matmul, loss_xla, rtol=1e-5)
  # Every kernel (3x3 and 1x1 shortcut), norm, head and the input gradient, each non-zero.
  _assert_close(grads_matmul, grads_xla)


def test_matmul_path_leaves_no_convolution_in_the_gradient_program(models):
  x, y = jnp.ones((2, *SHAPE)), jnp.array([0, 1])

  def hlo(conv):
    model = models[conv]
    return jax.jit(jax.grad(_loss(model))).lower(model.params, x, y).as_text()

  assert "convolution" not in hlo("matmul")
  assert "convolution" in hlo("xla")


def test_unknown_conv_is_rejected():
  with pytest.raises(ValueError, match=r"conv must be one of .*'winograd'"):
    resnet12_model(3, jax.random.key(0), input_shape=SHAPE, widths=WIDTHS, conv="winograd")
