"""The benchmark workloads: models, learners and fixed task batches, shared by the benchmarks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

import metajax

OUTER_LR = 1e-3


@dataclasses.dataclass(frozen=True)
class Workload:
  """One benchmark row.

  Attributes:
    name: identifier used by ``--workloads``.
    title: human-readable description.
    algorithm: ``"maml"``, ``"fomaml"``, ``"reptile"`` or ``"protonet"``.
    model: ``"mlp"`` (sinusoid), ``"conv4"`` or ``"resnet12"``.
    ways, shots, queries: episode shape (per class); sinusoid: shots/queries points.
    steps: inner steps.
    meta_batch: tasks per meta-step.
    input_shape: ``(H, W, C)`` images.
    filters: Conv-4 width.
    widths: ResNet-12 block widths.
    pooling: Conv-4 ``"stride"`` (MAML Omniglot) or ``"max"``.
    inner_lr: inner SGD step size.
  """

  name: str
  title: str
  algorithm: str
  model: str
  ways: int
  shots: int
  queries: int
  steps: int
  meta_batch: int
  input_shape: tuple[int, int, int] = (28, 28, 1)
  filters: int = 64
  widths: tuple[int, int, int, int] = (64, 160, 320, 640)
  pooling: str = "stride"
  inner_lr: float = 0.4


def _omniglot(name, title, algorithm, ways, steps, meta_batch):
  return Workload(name, title, algorithm, "conv4", ways, 1, 5, steps, meta_batch)


WORKLOADS = {w.name: w for w in [
    Workload("sinusoid_maml_1", "sinusoid MAML, MLP 40-40, K=10, B=25, 1 step", "maml", "mlp",
             1, 10, 10, 1, 25, inner_lr=0.01),
    Workload("sinusoid_maml_5", "sinusoid MAML, MLP 40-40, K=10, B=25, 5 steps", "maml", "mlp",
             1, 10, 10, 5, 25, inner_lr=0.01),
    _omniglot("omniglot_maml_5w1s", "Omniglot MAML 5w1s, 1 step, B=32", "maml", 5, 1, 32),
    _omniglot("omniglot_maml_20w1s", "Omniglot MAML 20w1s, 5 steps, B=16", "maml", 20, 5, 16),
    _omniglot("omniglot_fomaml_5w1s", "Omniglot FOMAML 5w1s, 1 step, B=32", "fomaml", 5, 1, 32),
    _omniglot("omniglot_fomaml_20w1s", "Omniglot FOMAML 20w1s, 5 steps, B=16", "fomaml", 20, 5,
              16),
    _omniglot("omniglot_reptile_5w1s", "Omniglot Reptile 5w1s, 1 step, B=32", "reptile", 5, 1,
              32),
    _omniglot("omniglot_reptile_20w1s", "Omniglot Reptile 20w1s, 5 steps, B=16", "reptile", 20,
              5, 16),
    Workload("omniglot_protonet_20w5s", "Omniglot ProtoNet 20w5s15q, Conv-4 (max-pool), B=1",
             "protonet", "conv4", 20, 5, 15, 0, 1, pooling="max"),
    Workload("mini_maml_5w1s", "84x84 RGB MAML 5w1s15q, Conv-4 32 (max-pool), 5 steps, B=4",
             "maml", "conv4", 5, 1, 15, 5, 4, input_shape=(84, 84, 3), filters=32,
             pooling="max", inner_lr=0.01),
    Workload("mini_protonet_resnet12_5w5s",
             "84x84 RGB ProtoNet 5w5s15q, ResNet-12 64-160-320-640, B=1", "protonet", "resnet12",
             5, 5, 15, 0, 1, input_shape=(84, 84, 3)),
    Workload("mini_maml_resnet12_5w1s",
             "84x84 RGB MAML 5w1s15q, ResNet-12 64-160-320-640, 5 steps, B=2", "maml",
             "resnet12", 5, 1, 15, 5, 2, input_shape=(84, 84, 3), inner_lr=0.001),
]}


def make_tasks(workload: Workload, seed: int = 0) -> metajax.Task:
  """A fixed task batch with the workload's shapes (random inputs, balanced labels)."""
  rng = np.random.default_rng(seed)
  w = workload
  if w.model == "mlp":
    return metajax.data.sinusoid_tasks(jax.random.key(seed), batch_size=w.meta_batch,
                                       shots=w.shots, queries=w.queries)
  shape = (w.meta_batch, w.ways * w.shots, *w.input_shape)
  qshape = (w.meta_batch, w.ways * w.queries, *w.input_shape)
  support_x = rng.standard_normal(shape, dtype=np.float32)
  query_x = rng.standard_normal(qshape, dtype=np.float32)
  support_y = np.tile(np.repeat(np.arange(w.ways), w.shots), (w.meta_batch, 1)).astype(np.int32)
  query_y = np.tile(np.repeat(np.arange(w.ways), w.queries), (w.meta_batch, 1)).astype(np.int32)
  return metajax.Task(*(jnp.asarray(a) for a in (support_x, support_y, query_x, query_y)))


def make_model(workload: Workload, *, conv: str = "auto", seed: int = 1) -> metajax.Model:
  """The metajax model; ``conv`` is the ``"xla"``, ``"matmul"`` or ``"auto"`` convolution."""
  w = workload
  key = jax.random.key(seed)
  if w.model == "mlp":
    return metajax.models.mlp_model([40, 40], 1, key, input_dim=1)
  from flax import nnx

  outputs = None if w.algorithm == "protonet" else w.ways
  if w.model == "resnet12":
    module = metajax.models.ResNet12(outputs, input_shape=w.input_shape, widths=w.widths,
                                     conv=conv, rngs=nnx.Rngs(key))
    return metajax.from_nnx(module)
  module = metajax.models.Conv4(outputs, input_shape=w.input_shape, filters=w.filters,
                                pooling=w.pooling, conv=conv, rngs=nnx.Rngs(key))
  return metajax.from_nnx(module)


def make_learner(workload: Workload, model: metajax.Model) -> metajax.MetaLearner:
  w = workload
  loss = "mse" if w.model == "mlp" else "cross_entropy"
  if w.algorithm == "protonet":
    return metajax.algorithms.protonet(model)
  if w.algorithm == "reptile":
    return metajax.reptile(model, steps=w.steps, inner_optimizer=optax.sgd(w.inner_lr), loss=loss)
  return metajax.maml(model, inner_lr=w.inner_lr, steps=w.steps, loss=loss,
                      first_order=w.algorithm == "fomaml")


def outer_optimizer() -> optax.GradientTransformation:
  return optax.adam(OUTER_LR)
