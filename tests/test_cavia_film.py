"""CAVIA's FiLM-conditioned Conv-4: the context enters only through FiLM, phi = 0 is the plain
network at initialisation, the meta-gradient through it is right, and the trainer can build it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax
from metajax.algorithms.cavia import cavia_conv4_model, with_context
from metajax.models import conv4_model
from metajax.testing import check_meta_gradient
from metajax.train import registry
from metajax.train.config import Config

CONTEXT, WAYS = 3, 2


def film_model(key=0, **kwargs):
  kwargs = {"filters": 4, "pooling": "stride", "conditioning": "film", **kwargs}
  return cavia_conv4_model(WAYS, jax.random.key(key), context_dim=CONTEXT, **kwargs)


def images(key, n=4):
  return jax.random.normal(jax.random.key(key), (n, 28, 28, 1))


def run(model, params, x, context):
  return model.apply(params, model.state, with_context(x, jnp.asarray(context)), train=True)[0]


def reference_forward(params, x, context, film_blocks):
  """Conv-4 (stride-2 'SAME' convs, batch-statistics BatchNorm, ReLU) with FiLM written out."""
  films = dict(zip(film_blocks, (params["films"][k] for k in range(len(film_blocks)))))
  for i in range(4):
    conv, norm = params["convs"][i], params["norms"][i]
    x = jax.lax.conv_general_dilated(x, conv["kernel"], (2, 2), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"]
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    x = (x - mean) / jnp.sqrt(var + 1e-5) * norm["scale"] + norm["bias"]
    if i in films:
      out = context @ films[i]["kernel"] + films[i]["bias"]
      x = x * (1 + out[:x.shape[-1]]) + out[x.shape[-1]:]
    x = jax.nn.relu(x)
  x = x.reshape(x.shape[0], -1)
  return x @ params["head"]["kernel"] + params["head"]["bias"]


def test_zero_context_gives_the_plain_conv4_at_initialisation():
  model, x = film_model(), images(1)
  plain = conv4_model(WAYS, jax.random.key(5), filters=4, pooling="stride")
  shared = {k: v for k, v in model.params.items() if k != "films"}
  assert jax.tree.structure(shared) == jax.tree.structure(plain.params)
  expected = plain.apply(shared, plain.state, x, train=True)[0]
  np.testing.assert_allclose(run(model, model.params, x, np.zeros(CONTEXT)), expected,
                             rtol=1e-5, atol=1e-5)
  # ... and a context moves the logits (FiLM's weights are not zero).
  moved = run(model, model.params, x, np.ones(CONTEXT))
  assert float(jnp.linalg.norm(moved - expected)) > 1e-2 * float(jnp.linalg.norm(expected))


def test_the_context_acts_through_film_only():
  model, x = film_model(film_blocks=(1, 3)), images(2)
  # The convolutions see the image channel only, never the context channels.
  assert model.params["convs"][0]["kernel"].shape == (3, 3, 1, 4)
  assert len(model.params["films"]) == 2
  # Random FiLM biases (as after training) and a random context: an independent forward pass.
  params = jax.tree.map(lambda a: a, model.params)
  for k in range(2):
    params["films"][k]["bias"] = 0.3 * jax.random.normal(jax.random.key(10 + k), (8,))
  context = jax.random.normal(jax.random.key(3), (CONTEXT,))
  np.testing.assert_allclose(run(model, params, x, context),
                             reference_forward(params, x, context, (1, 3)), rtol=2e-4, atol=2e-4)
  # FiLM kernels zeroed: the outputs no longer depend on the context.
  for k in range(2):
    params["films"][k]["kernel"] = jnp.zeros_like(params["films"][k]["kernel"])
  np.testing.assert_allclose(run(model, params, x, context), run(model, params, x, -3 * context),
                             rtol=1e-6, atol=1e-6)


def test_cavia_meta_gradient_through_film_matches_finite_differences():
  # Float64: the ReLU network's adapted loss has kinks that float32 differences can straddle.
  with jax.enable_x64(True):
    model = film_model(key=4)
    as64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
    model = model._replace(params=as64(model.params), state=as64(model.state))
    learner = metajax.cavia(model, context_dim=CONTEXT, inner_lr=0.5, steps=1)
    params = learner.init()
    keys = jax.random.split(jax.random.key(6), 2)
    task = metajax.Task(jax.random.normal(keys[0], (2 * WAYS, 28, 28, 1), jnp.float64),
                        jnp.repeat(jnp.arange(WAYS), 2),
                        jax.random.normal(keys[1], (2 * WAYS, 28, 28, 1), jnp.float64),
                        jnp.repeat(jnp.arange(WAYS), 2))
    analytic, _ = check_meta_gradient(learner, params, task, jax.random.key(0), directions=2,
                                      eps=1e-5, rtol=1e-4, atol=1e-8)
    assert np.all(np.abs(analytic) > 1e-6)


def test_bad_conditioning_options_raise_before_building():
  with pytest.raises(ValueError, match=r"conditioning must be one of \('concat', 'film'\), got "
                                       r"'fim'"):
    cavia_conv4_model(WAYS, jax.random.key(0), context_dim=CONTEXT, conditioning="fim")
  with pytest.raises(ValueError, match=r"film_blocks=\(2,\) applies to conditioning='film'"):
    cavia_conv4_model(WAYS, jax.random.key(0), context_dim=CONTEXT, film_blocks=(2,))
  with pytest.raises(ValueError, match=r"film_blocks must list distinct block indices in 0-3"):
    film_model(film_blocks=(1, 4))
  model = film_model()
  with pytest.raises(ValueError, match=r"C \+ context_dim = 1 \+ 3 channels.*\(2, 28, 28, 5\)"):
    model.apply(model.params, model.state, jnp.zeros((2, 28, 28, 5)))


CAVIA = Config(name="cavia_film", algorithm="cavia",
               algorithm_kwargs=dict(context_dim=CONTEXT, inner_lr=1.0, steps=1),
               model="conv4", model_kwargs=dict(filters=4, pooling="stride"), dataset="omniglot",
               ways=WAYS, shots=1, queries=1, meta_batch=2)


def test_the_trainer_builds_either_conditioning_and_names_a_bad_one():
  # Default: concatenation, the same network and initial parameters as before FiLM existed.
  registry.check(CAVIA)
  concat = registry.build_learner(CAVIA, jax.random.key(0)).init()["model"]
  widened = conv4_model(WAYS, jax.random.key(0), input_shape=(28, 28, 1 + CONTEXT), filters=4,
                        pooling="stride").params
  jax.tree.map(np.testing.assert_array_equal, concat, widened)
  film = CAVIA.replace(model_kwargs=dict(filters=4, pooling="stride", conditioning="film"))
  registry.check(film)
  params = registry.build_learner(film, jax.random.key(0)).init()["model"]
  assert params["films"][0]["kernel"].shape == (CONTEXT, 8)
  assert params["convs"][0]["kernel"].shape == (3, 3, 1, 4)
  bad = CAVIA.replace(model_kwargs=dict(filters=4, conditioning="flim"))
  with pytest.raises(ValueError, match=r"model_kwargs.*'flim'.*\('concat', 'film'\)"):
    registry.check(bad)
  with pytest.raises(ValueError, match=r"'algorithm_kwargs.context_dim' is required by cavia"):
    registry.check(CAVIA.replace(algorithm_kwargs=dict(inner_lr=1.0)))
