"""Task-batch sharding over devices: same results as one device.

The 8 CPU devices come from ``XLA_FLAGS=--xla_force_host_platform_device_count=8``, which must be
set before JAX initialises, so the comparison runs in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
  import json
  import jax, jax.numpy as jnp, numpy as np, optax
  import metajax

  assert len(jax.devices()) == 8, jax.devices()
  model = metajax.models.mlp_model([16], 1, jax.random.key(0), input_dim=1)
  learner = metajax.maml(model, inner_lr=0.05, steps=1, loss="mse")
  optimizer = optax.adam(1e-2)
  tasks = metajax.data.sinusoid_tasks(jax.random.key(1), batch_size=16, shots=5)
  out = {}
  for batching in ("vmap", "map"):
    runs = {}
    for name, kwargs in (("single", {}), ("sharded", {"devices": "all"})):
      step = metajax.make_meta_step(learner, optimizer, batching=batching, **kwargs)
      state = metajax.init_meta_state(learner, optimizer)
      for i in range(2):
        state, metrics = step(state, tasks, jax.random.key(i))
      runs[name] = (state.params, metrics)
      if name == "sharded":
        spec = state.params["model"]["head"]["kernel"].sharding
        out[batching + "_replicated"] = spec.is_fully_replicated
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), runs["single"],
                         runs["sharded"])
    out[batching] = max(jax.tree.leaves(diffs))
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("tasks",))
  step = metajax.make_meta_step(learner, optimizer, mesh=mesh)
  state, _ = step(metajax.init_meta_state(learner, optimizer), tasks, jax.random.key(0))
  out["mesh4_finite"] = bool(all(np.isfinite(x).all() for x in jax.tree.leaves(state.params)))
  try:
    step(state, jax.tree.map(lambda x: x[:6], tasks), jax.random.key(0))
    out["uneven_error"] = None
  except ValueError as err:
    out["uneven_error"] = str(err)
  print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def sharded_run() -> dict:
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_sharded_meta_steps_equal_single_device(sharded_run, batching):
  assert sharded_run[batching] < 1e-5
  assert sharded_run[batching + "_replicated"]


def test_mesh_option_and_uneven_batch_error(sharded_run):
  assert sharded_run["mesh4_finite"]
  assert "multiple of 4" in sharded_run["uneven_error"]
