"""One compiled meta-update over a batch of tasks.

The task axis is added here, and only here. How it is batched is an option:

* ``"vmap"``: all tasks at once with ``jax.vmap``. Fastest on GPU/TPU.
* ``"map"``: tasks one after another inside the compiled step (``lax.scan``),
  summing gradients as it goes: memory stays that of one task and compile
  time is flat in the batch size. Fastest on CPU for every workload we measured.
* ``"chunked"``: ``vmap`` over chunks of ``chunk_size`` tasks, chunks in sequence.
* ``"unrolled"``: a Python loop over tasks traced into one program. Each
  task's XLA convolutions stay ordinary (not grouped) convolutions outside any
  loop body, so it is the fastest choice on CPU for models built on XLA
  convolutions, at the price of compile time that grows with the batch.
* ``"auto"``: ``vmap`` on GPU/TPU. On CPU: ``unrolled`` when one task's
  gradient contains an XLA convolution, else ``map``.

Why, on CPU. XLA:CPU runs a convolution's kernel gradient ~30x slower inside a
loop body than outside one, and per-task kernels under ``vmap`` become grouped
convolutions. metajax's Conv-4 therefore defaults (on CPU) to
:mod:`metajax.models._conv`, a convolution written as patches and matmuls whose
derivatives of every order are matmuls, slices and pads, so its gradients
contain no convolution. Per-task matmuls under ``vmap`` become batched matmuls
that XLA:CPU runs no faster than a sequential loop while materialising every
task's activations at once; ``map`` keeps one task's working set in cache.
Quiet 2-core AMD EPYC, 2026-11-22 (``benchmarks/run_all.py --quick``), meta-steps/s:

==========================================  ========  =========  ==================
workload                                    ``map``   ``vmap``   other
==========================================  ========  =========  ==================
Omniglot MAML 5w1s, B=32, matmul conv        3.28      1.75       unrolled 2.60
Omniglot MAML 5w1s, B=32, XLA conv           0.36      0.29       unrolled 1.11
Omniglot FOMAML 5w1s, B=32, matmul conv      5.97      2.66
Omniglot MAML 20w1s, 5 steps, B=16           0.69      0.50
84x84 MAML 5w1s, 5 steps, B=4                0.32      0.22
sinusoid MAML, 1 step, B=25                  1528      1473
sinusoid MAML, 5 steps, B=25                 360       327
==========================================  ========  =========  ==================

XLA temp memory of the Omniglot 5w1s step: 13 MiB with ``map``, 410 MiB with
``vmap``. Compile times were 5-9 s for both (unrolled: 77-104 s).

Sharding. ``make_meta_step(..., mesh=...)`` or ``devices="all"`` shards the
task axis over devices (``NamedSharding(mesh, P("tasks"))``, parameters
replicated); each device batches its tasks as above.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax

from metajax.core._checks import check_steps
from metajax.core.masks import check_masks
from metajax.core.meta_learner import MetaLearner, Metrics
from metajax.core.types import Array, PRNGKey, PyTree, Task

BATCHING = ("auto", "vmap", "map", "chunked", "unrolled")
TASK_AXIS = "tasks"


class MetaTrainState(NamedTuple):
  """Everything the meta-step updates.

  Attributes:
    step: outer iteration count (int32 scalar).
    params: meta-parameters.
    opt_state: outer optimizer state.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> params = {"w": jnp.zeros(3)}
    >>> state = MetaTrainState(jnp.zeros([], jnp.int32), params, optax.sgd(0.1).init(params))
    >>> state.params["w"].shape
    (3,)
  """

  step: Array
  params: PyTree
  opt_state: PyTree


def init_meta_state(learner: MetaLearner, optimizer: optax.GradientTransformation
                    ) -> MetaTrainState:
  """Initial :class:`MetaTrainState` from a learner's meta-parameters.

  Args:
    learner: the algorithm; its ``init()`` gives the meta-parameters.
    optimizer: the outer (meta) optimizer, an optax transformation.

  Returns:
    A :class:`MetaTrainState` at step 0 with the optimizer's initial state. The optimizer
    sees the meta-parameters less the learner's ``state_keys`` (learner state such as
    running statistics, which the meta-step sets rather than optimises).

  Example:
    >>> import metajax, jax, optax
    >>> model = metajax.models.mlp_model([8], 1, jax.random.key(0), input_dim=1)
    >>> state = metajax.init_meta_state(metajax.maml(model, loss="mse"), optax.adam(1e-3))
    >>> int(state.step)
    0
  """
  params = learner.init()
  trainable, _ = split_learner_state(params, learner.state_keys)
  return MetaTrainState(jnp.zeros([], jnp.int32), params, optimizer.init(trainable))


def split_learner_state(tree: PyTree, state_keys: tuple[str, ...]) -> tuple[PyTree, dict]:
  """``(tree without state_keys, {key: tree[key]})`` for a learner's state keys.

  With no ``state_keys`` the tree comes back as it is (the same object), so learners without
  state take exactly the path they always took.

  Args:
    tree: meta-parameters, or a per-task result shaped like them (``task_grad``'s output).
    state_keys: the learner's :attr:`metajax.MetaLearner.state_keys`.

  Returns:
    ``(trainable, state)``: the tree less those keys, and a dict of them.

  Raises:
    ValueError: when ``tree`` is not a dict holding every state key.

  Example:
    >>> split_learner_state({"model": 1, "stats": 2}, ("stats",))
    ({'model': 1}, {'stats': 2})
  """
  if not state_keys:
    return tree, {}
  if not isinstance(tree, dict) or not set(state_keys) <= set(tree):
    raise ValueError(
        f"the learner declares state_keys={state_keys}, so its meta-parameters must be a dict "
        f"holding those keys, got {type(tree).__name__} with keys "
        f"{sorted(tree) if isinstance(tree, dict) else None}; return them from init().")
  return ({k: v for k, v in tree.items() if k not in state_keys},
          {k: tree[k] for k in state_keys})


def batched_task_grads(
    learner: MetaLearner,
    *,
    batching: str,
    chunk_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable[[PyTree, Task, PRNGKey, Array], tuple[PyTree, Metrics]]:
  """Mean meta-gradient and metrics over a task batch, batched as asked.

  Args:
    learner: the algorithm.
    batching: one of ``"vmap"``, ``"map"``, ``"chunked"``, ``"unrolled"``.
    chunk_size: tasks per chunk for ``"chunked"``.
    mesh: shard the task axis over this mesh's ``"tasks"`` axis (see :func:`make_meta_step`):
      each device batches its share of the tasks as asked, then the means are averaged across
      devices (``lax.pmean``). Per-task keys are split before sharding, so the result equals the
      single-device one up to float summation order.

  Returns:
    ``fn(params, tasks, key, step) -> (mean_grads, mean_metrics)``, where ``tasks`` is a
    :class:`metajax.Task` with a leading task axis; ``key`` is split into one key per task.

  Raises:
    ValueError: for an unknown ``batching``, a ``chunk_size`` below 1 for ``"chunked"``, or a
      task batch that ``chunk_size`` (or the mesh's device count) does not divide.

  Example:
    Two identical tasks (fit ``y = 2x`` from ``w = 1``, see :class:`metajax.MetaLearner`):
    the mean meta-gradient is each task's.

    >>> import metajax, jax, jax.numpy as jnp
    >>> model = metajax.from_function(lambda p, x: x * p["w"], {"w": jnp.ones(1)})
    >>> learner = metajax.maml(model, inner_lr=0.1, loss="mse")
    >>> x = jnp.ones((2, 4, 1))                    # [tasks, examples, features]
    >>> tasks = metajax.Task(x, 2 * x, x, 2 * x)
    >>> grad_fn = metajax.batched_task_grads(learner, batching="vmap")
    >>> grads, metrics = grad_fn(learner.init(), tasks, jax.random.key(0), 0)
    >>> round(float(grads["model"]["w"][0]), 4)
    -1.28
  """
  if batching not in BATCHING[1:]:
    raise ValueError(f"batching must be one of {BATCHING}, got {batching!r}.")
  if batching == "chunked":
    chunk_size = check_steps(chunk_size, "chunk_size", minimum=1)

  def one(params, task, key, step):
    return learner.task_grad(params, task, key, step)

  def mean_over_tasks(params, tasks, key, step):
    n_tasks = jax.tree.leaves(tasks)[0].shape[0]
    keys = jax.random.split(key, n_tasks)
    if mesh is None:
      return mean_with_keys(params, tasks, keys, step)
    _check_divisible(n_tasks, mesh.shape[TASK_AXIS])
    spec = jax.sharding.PartitionSpec
    sharded = jax.shard_map(
        lambda *args: jax.lax.pmean(mean_with_keys(*args), TASK_AXIS), mesh=mesh,
        in_specs=(spec(), spec(TASK_AXIS), spec(TASK_AXIS), spec()), out_specs=spec(),
        check_vma=False,
    )
    return sharded(params, tasks, keys, step)

  def mean_with_keys(params, tasks, keys, step):
    n_tasks = keys.shape[0]
    if batching == "vmap":
      grads, metrics = jax.vmap(one, in_axes=(None, 0, 0, None))(params, tasks, keys, step)
      return jax.tree.map(lambda x: jnp.mean(x, axis=0), (grads, metrics))
    if batching == "unrolled":
      total = None
      for i in range(n_tasks):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        out = one(params, task, keys[i], step)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
      return jax.tree.map(lambda x: x / n_tasks, total)
    if batching == "map":
      return _scan_mean(lambda t, k: one(params, t, k, step), tasks, keys, n_tasks)
    if n_tasks % chunk_size:
      raise ValueError(
          f"batching='chunked' needs the task batch ({n_tasks}) to be a multiple of "
          f"chunk_size={chunk_size}; pick a chunk size that divides it."
      )
    chunks = n_tasks // chunk_size
    regroup = lambda x: x.reshape((chunks, chunk_size) + x.shape[1:])
    vmapped = jax.vmap(one, in_axes=(None, 0, 0, None))
    chunk_sum = lambda t, k: jax.tree.map(lambda x: jnp.sum(x, axis=0), vmapped(params, t, k, step))
    mean_of_chunk_sums = _scan_mean(chunk_sum, jax.tree.map(regroup, tasks), regroup(keys), chunks)
    return jax.tree.map(lambda x: x / chunk_size, mean_of_chunk_sums)

  return mean_over_tasks


def _scan_mean(fn, tasks, keys, count):
  """Mean of ``fn(task, key)`` over the leading axis, accumulated in a scan."""
  shapes = jax.eval_shape(fn, jax.tree.map(lambda x: x[0], tasks), keys[0])
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def body(total, xs):
    return jax.tree.map(jnp.add, total, fn(*xs)), None

  total, _ = jax.lax.scan(body, zeros, (tasks, keys))
  return jax.tree.map(lambda x: x / count, total)


def select_batching(learner: MetaLearner, params: PyTree, task: Task) -> str:
  """The ``"auto"`` choice for this backend and workload (see module docstring).

  ``"vmap"`` on GPU/TPU; on CPU ``"unrolled"`` when one task's gradient contains an XLA
  convolution, else ``"map"``. Only shapes are traced; nothing is compiled or run.

  Args:
    learner: the algorithm.
    params: its meta-parameters.
    task: a task batch with a leading task axis (arrays or ``jax.ShapeDtypeStruct``).

  Returns:
    ``"vmap"``, ``"map"`` or ``"unrolled"``.

  Example:
    >>> import metajax, jax, jax.numpy as jnp
    >>> model = metajax.from_function(lambda p, x: x * p["w"], {"w": jnp.ones(1)})
    >>> learner = metajax.maml(model, loss="mse")
    >>> x = jnp.ones((2, 4, 1))
    >>> choice = metajax.select_batching(learner, learner.init(), metajax.Task(x, x, x, x))
    >>> choice == ("map" if jax.default_backend() == "cpu" else "vmap")
    True
  """
  if jax.default_backend() != "cpu":
    return "vmap"
  one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), task)
  step = jnp.zeros([], jnp.int32)
  jaxpr = jax.make_jaxpr(learner.task_grad)(params, one, jax.random.key(0), step)
  return "unrolled" if _has_convolution(jaxpr.jaxpr) else "map"


def _has_convolution(jaxpr) -> bool:
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      return True
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      if _has_convolution(sub):
        return True
  return False


def meta_update(
    learner: MetaLearner,
    optimizer: optax.GradientTransformation,
    *,
    batching: str = "vmap",
    chunk_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    check_finite: bool = False,
) -> Callable[[MetaTrainState, Task, PRNGKey], tuple[MetaTrainState, Metrics]]:
  """The pure (un-jitted) meta-update that :func:`make_meta_step` compiles.

  Use it to fuse several meta-steps into one compiled loop (``lax.scan``), as
  :func:`metajax.train.train_sinusoid` does with tasks sampled on device.

  Args:
    learner: the algorithm.
    optimizer: outer optax optimizer.
    batching: ``"vmap"``, ``"map"``, ``"chunked"`` or ``"unrolled"``.
    chunk_size: tasks per chunk for ``"chunked"``.
    mesh: shard the task axis over this mesh's ``"tasks"`` axis (see :func:`make_meta_step`).
    check_finite: return the input state unchanged when the inputs, the loss, the meta-gradient
      or the new state hold a NaN or an infinity, and report ``finite_inputs`` and
      ``finite_update`` (booleans) in the metrics.

  Returns:
    ``update(state, tasks, key) -> (state, metrics)``.
  """
  mean_grads = batched_task_grads(learner, batching=batching, chunk_size=chunk_size, mesh=mesh)

  def update(state: MetaTrainState, tasks: Task, key: PRNGKey):
    grads, metrics = mean_grads(state.params, tasks, key, state.step)
    # Learner state (e.g. running statistics): task_grad gave its new value; the task mean is
    # stored as it is, and the optimizer never sees it.
    grads, new_learner_state = split_learner_state(grads, learner.state_keys)
    params, _ = split_learner_state(state.params, learner.state_keys)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    params = optax.apply_updates(params, updates)
    if new_learner_state:
      params = {**params, **new_learner_state}
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    new_state = MetaTrainState(state.step + 1, params, opt_state)
    if not check_finite:
      return new_state, metrics
    finite_inputs = all_finite(tasks)
    finite_update = all_finite((metrics.get("loss"), grads, params, opt_state))
    keep_new = finite_inputs & finite_update
    # Selected inside the compiled step, so a donated input state is never lost.
    new_state = jax.tree.map(lambda new, old: _select(keep_new, new, old), new_state, state)
    return new_state, {**metrics, "finite_inputs": finite_inputs, "finite_update": finite_update}

  return update


def _select(condition: Array, new: Array, old: Array) -> Array:
  if jnp.issubdtype(jnp.result_type(new), jax.dtypes.prng_key):  # e.g. optax.add_noise's key
    data = jnp.where(condition, jax.random.key_data(new), jax.random.key_data(old))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(new))
  return jnp.where(condition, new, old)


def all_finite(tree: PyTree) -> Array:
  """A boolean scalar: every floating-point leaf of ``tree`` is free of NaN and infinities."""
  checks = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
  return jnp.stack(checks).all() if checks else jnp.asarray(True)


class NonFiniteStepError(FloatingPointError):
  """A meta-step met a NaN or an infinity; the state was kept as it was before the step.

  Raised by the step :func:`make_meta_step` builds with ``check_finite=True`` (or ``"raise"``)
  when the inputs, the loss, the meta-gradient or the new state hold a NaN or an infinity.

  Attributes:
    state: the unchanged state (the input state's values, in fresh buffers when it was donated):
      continue from it, e.g. after skipping the batch or lowering the learning rate.
    metrics: the metrics of the failed step.

  Example:
    >>> try:  # doctest: +SKIP
    ...   state, metrics = meta_step(state, tasks, key)  # make_meta_step(..., check_finite=True)
    ... except metajax.NonFiniteStepError as error:
    ...   state = error.state  # the state before the step; skip this batch
  """

  def __init__(self, message: str, state: MetaTrainState, metrics: Metrics):
    super().__init__(message)
    self.state = state
    self.metrics = metrics


FINITE_CHECKS = (False, True, "raise", "skip")


def _check_host_inputs_finite(tasks: Task) -> None:
  """Raises, before any work, when a host (numpy) field of ``tasks`` holds a NaN or an inf."""
  for field, values in zip(Task._fields, tasks):
    if not isinstance(values, np.ndarray) or not np.issubdtype(values.dtype, np.inexact):
      continue
    bad = ~np.isfinite(values)
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(
          f"tasks.{field} must be finite, but it holds {int(bad.sum())} NaN or infinite "
          f"value(s), the first {values[where]} at index {where} (task {where[0]}); a meta-step "
          "on it would make every parameter NaN. Clean or drop those tasks (np.isfinite finds "
          "them), or pass check_finite=False to skip this check."
      )


def _raise_if_not_finite(state: MetaTrainState, metrics: Metrics) -> None:
  finite_inputs, finite_update = jax.device_get((metrics["finite_inputs"],
                                                 metrics["finite_update"]))
  if finite_inputs and finite_update:
    return
  loss, grad_norm = jax.device_get((metrics.get("loss"), metrics["grad_norm"]))
  if not finite_inputs:
    cause = ("the task batch holds NaN or infinite values (support/query inputs or targets); "
             "clean or drop those tasks")
  else:
    cause = (f"the update was not finite (loss {loss}, meta-gradient norm {grad_norm}); lower "
             "the outer or inner learning rate, give Adam-like inner optimizers eps_root > 0, or "
             "check the data")
  raise NonFiniteStepError(
      f"meta-step {int(jax.device_get(state.step)) + 1}: {cause}. The state was left as it was "
      "before this step (error.state holds it; the donated input is gone).", state, metrics)


def make_meta_step(
    learner: MetaLearner,
    optimizer: optax.GradientTransformation,
    *,
    batching: str = "auto",
    chunk_size: int | None = None,
    donate: bool = True,
    check_inputs: bool = True,
    check_finite: bool | str = False,
    mesh: jax.sharding.Mesh | None = None,
    devices: Sequence[jax.Device] | str | None = None,
) -> Callable[[MetaTrainState, Task, PRNGKey], tuple[MetaTrainState, Metrics]]:
  """Builds ``meta_step(state, tasks, key) -> (state, metrics)``, compiled once.

  Each call averages the per-task meta-gradients of ``tasks`` (a :class:`Task`
  with a leading task axis), applies one ``optimizer`` update and returns the
  mean per-task metrics plus ``grad_norm``. The old state is donated.

  Args:
    learner: the algorithm, e.g. :func:`metajax.maml`.
    optimizer: outer optax optimizer (e.g. ``optax.adam(1e-3)``).
    batching: how the task axis is batched: ``"auto"``, ``"vmap"``, ``"map"``,
      ``"chunked"`` or ``"unrolled"`` (see the module docstring).
    chunk_size: tasks per chunk for ``batching="chunked"``.
    donate: donate the input state's buffers to the output.
    check_inputs: check shapes and label ranges before running the compiled
      step: once per input shape signature, and on every call for host (numpy)
      labels, whose check costs microseconds.
    check_finite: what a NaN or an infinity in the inputs, the loss, the meta-gradient or the
      new state does. ``False`` (default): nothing is checked (no cost); a NaN spreads into
      every parameter and, the input being donated, the previous state is gone too.
      ``"skip"``: the compiled step keeps the previous state when anything is non-finite (a
      select inside the step, so donation loses nothing) and reports ``finite_inputs`` and
      ``finite_update`` in the metrics; no host round trip (the trainer uses this and checks
      the metrics when it logs them). ``True`` or ``"raise"``: as ``"skip"``, and numpy inputs
      are checked on the host before the step (a ``ValueError`` naming the field and task), and
      after each step the flags are fetched (one device-to-host sync per step) and a
      :class:`NonFiniteStepError` is raised whose ``state`` is the unchanged state.
    mesh: data-parallel meta-training: a ``jax.sharding.Mesh`` with a ``"tasks"``
      axis. The task batch is sharded over it (``NamedSharding(mesh, P("tasks"))``),
      parameters and optimizer state are replicated, each device batches its
      tasks as ``batching`` says and the meta-gradient is averaged across devices.
      The meta-batch must be a multiple of the axis size. Results equal the
      single-device ones up to float summation order. Default: one device.
    devices: shorthand for ``mesh``: ``"all"`` (``jax.devices()``) or a list of
      devices, made into a one-axis ``Mesh(devices, ("tasks",))``.

  Multi-host: call ``jax.distributed.initialize()`` in every process first;
  ``devices="all"`` then spans every process's devices (a global mesh), and the
  same program runs everywhere. Each process passes its share of the task batch
  as a global array, e.g. ``jax.tree.map(lambda x:
  jax.make_array_from_process_local_data(NamedSharding(mesh, P("tasks")), x),
  local_tasks)`` with ``mesh = meta_step.mesh``; the state is built identically in
  every process (same seed).

  Returns:
    The meta-step function. ``meta_step.batching`` tells what ``"auto"`` chose
    (after the first call).

  Example:
    >>> import metajax, jax, optax
    >>> model = metajax.models.mlp_model([40, 40], 1, jax.random.key(0), input_dim=1)
    >>> learner = metajax.maml(model, inner_lr=0.01, loss="mse")
    >>> optimizer = optax.adam(1e-3)
    >>> step = metajax.make_meta_step(learner, optimizer)
    >>> state = metajax.init_meta_state(learner, optimizer)
    >>> tasks = metajax.data.sinusoid_tasks(jax.random.key(1), batch_size=4, shots=10)
    >>> state, metrics = step(state, tasks, jax.random.key(2))
    >>> int(state.step), sorted(metrics)[:2]
    (1, ['grad_norm', 'loss'])
  """
  if batching not in BATCHING:
    raise ValueError(
        f"batching must be one of {BATCHING}, got {batching!r}; 'auto' picks the fastest "
        "measured choice for the backend."
    )
  if not any(check_finite is option for option in (False, True)) and check_finite not in (
      "raise", "skip"):
    raise ValueError(
        f"check_finite must be one of {FINITE_CHECKS}, got {check_finite!r}: False (no check), "
        "'skip' (keep the old state on a non-finite step) or True/'raise' (also raise)."
    )
  raise_on_nonfinite = check_finite is True or check_finite == "raise"

  mesh = _task_mesh(mesh, devices)
  compiled: dict[str, Callable] = {}
  checked: set[tuple] = set()
  if mesh is not None:
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    by_task = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(TASK_AXIS))
    shardings = {"in_shardings": (replicated, by_task, replicated),
                 "out_shardings": (replicated, replicated)}
  else:
    shardings = {}

  def meta_step(state: MetaTrainState, tasks: Task, key: PRNGKey):
    if check_inputs:
      if not isinstance(tasks, Task):
        raise TypeError(
            f"tasks must be a metajax.Task batch, got {type(tasks).__name__}; build one with "
            "metajax.Task(support_x, support_y, query_x, query_y)."
        )
      # Shapes once per signature; label values on every call for host arrays (cheap there).
      signature = tuple((np.shape(a), getattr(a, "dtype", type(a))) for a in tasks)
      if signature not in checked or isinstance(tasks.support_y, np.ndarray):
        # Central guard: a learner without mask support never trains on padding, whatever its
        # own check_task does (see metajax.core.masks).
        check_masks(tasks, supported=learner.supports_masks, name=learner.name)
        learner.check_task(tasks)
        checked.add(signature)
    if raise_on_nonfinite:
      _check_host_inputs_finite(tasks)
    if meta_step.batching is None:
      meta_step.batching = select_batching(learner, state.params, tasks)
    mode = meta_step.batching
    if mode not in compiled:
      update = meta_update(learner, optimizer, batching=mode, chunk_size=chunk_size, mesh=mesh,
                           check_finite=check_finite is not False)
      compiled[mode] = jax.jit(update, donate_argnums=(0,) if donate else (), **shardings)
    if mesh is not None:
      _check_divisible(jax.tree.leaves(tasks)[0].shape[0], mesh.shape[TASK_AXIS])
    if mesh is not None and jax.process_count() == 1:
      # Host or single-device arrays move to the mesh; arrays already placed there stay put.
      state, tasks, key = jax.device_put((state, tasks, key), shardings["in_shardings"])
    state, metrics = compiled[mode](state, tasks, key)
    if raise_on_nonfinite:
      _raise_if_not_finite(state, metrics)
    return state, metrics

  meta_step.batching = None if batching == "auto" else batching
  meta_step.learner = learner
  meta_step.mesh = mesh
  return meta_step


def _check_divisible(n_tasks: int, shards: int) -> None:
  if n_tasks % shards:
    raise ValueError(
        f"the task batch ({n_tasks}) must split evenly over the {shards} devices of the mesh's "
        f"{TASK_AXIS!r} axis; use a meta-batch that is a multiple of {shards}."
    )


def _task_mesh(mesh, devices) -> jax.sharding.Mesh | None:
  """The mesh ``make_meta_step`` shards tasks over, from its ``mesh``/``devices`` options."""
  if mesh is not None and devices is not None:
    raise ValueError("give make_meta_step either mesh= or devices=, not both.")
  if devices is not None:
    if isinstance(devices, str):
      if devices != "all":
        raise ValueError(f"devices must be 'all' or a list of devices, got {devices!r}.")
      devices = jax.devices()
    mesh = jax.sharding.Mesh(np.asarray(list(devices)), (TASK_AXIS,))
  if mesh is not None and TASK_AXIS not in mesh.axis_names:
    raise ValueError(
        f"the mesh needs an axis named {TASK_AXIS!r} to shard tasks over, got axes "
        f"{mesh.axis_names}; build it as jax.sharding.Mesh(devices, ('tasks',))."
    )
  return mesh


def evaluate_tasks(
    learner: MetaLearner,
    params: PyTree,
    tasks: Task,
    key: PRNGKey,
    *,
    steps: int | None = None,
    batching: str = "auto",
    check_inputs: bool = True,
) -> Metrics:
  """Per-task test metrics for a batch of tasks (no outer update).

  Args:
    learner: the algorithm.
    params: meta-parameters.
    tasks: task batch with a leading task axis.
    key: a PRNG key, split into one key per task, or one key per task (a key array of shape
      ``[n_tasks]``), so that a task's key need not depend on how tasks are batched.
    steps: test-time inner steps (``None``: the learner's ``eval_steps``).
    batching: ``"vmap"``, ``"map"`` (one task at a time inside the compiled call: the memory
      of one task) or ``"auto"``: ``map`` on CPU, where it is as fast and vmapping 50
      Tiny-ImageNet or Relation-Network episodes took 9-18 GB, else ``vmap``.
    check_inputs: run ``learner.check_task`` on the batch first (shapes, and label ranges of
      concrete labels: labels outside ``[0, ways)`` would give accuracy 0 and a NaN loss).

  Returns:
    Metrics with a leading task axis, as numpy arrays.

  Example:
    >>> import metajax, jax
    >>> model = metajax.models.mlp_model([8], 1, jax.random.key(0), input_dim=1)
    >>> learner = metajax.maml(model, loss="mse")
    >>> tasks = metajax.data.sinusoid_tasks(jax.random.key(1), batch_size=3, shots=5)
    >>> metajax.evaluate_tasks(learner, learner.init(), tasks, jax.random.key(2))["loss"].shape
    (3,)
  """
  if check_inputs:
    if not isinstance(tasks, Task):
      raise TypeError(
          f"tasks must be a metajax.Task batch, got {type(tasks).__name__}; build one with "
          "metajax.Task(support_x, support_y, query_x, query_y)."
      )
    check_masks(tasks, supported=learner.supports_masks, name=learner.name)
    learner.check_task(tasks)
  if batching == "auto":
    batching = "map" if jax.default_backend() == "cpu" else "vmap"
  fn = _eval_fn(learner, steps, batching)
  n_tasks = jax.tree.leaves(tasks)[0].shape[0]
  typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
  one_key = jnp.ndim(key) == (0 if typed else 1)  # raw uint32 keys carry a trailing axis
  keys = jax.random.split(key, n_tasks) if one_key else key
  if keys.shape[0] != n_tasks:
    raise ValueError(f"key holds {keys.shape[0]} keys for {n_tasks} tasks; pass one key, or one "
                     "key per task.")
  return jax.tree.map(np.asarray, fn(params, tasks, keys))


# Compiled functions per ``learner.evaluate``, kept only while that function lives. An
# ``lru_cache`` keyed on the learner held up to 64 learners alive, each with its closures and
# compiled executables (~70 executables, ~430 memory maps for a Conv-4 run): a process training
# many learners (a notebook sweep, the test suite) grew toward Linux's 65,530-map limit, where
# XLA segfaulted loading an executable (CI, 2026-11-30). The cached functions reach the learner
# only through a weak reference, so the learner, its cache entry and its executables go together.
_PER_EVALUATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PER_EVALUATE_LOCK = threading.Lock()


def cached_per_evaluate(learner: MetaLearner, key: Hashable,
                        build: Callable[[Callable[[], Callable]], Callable]) -> Callable:
  """``build(get_evaluate)``, cached on ``learner.evaluate`` for as long as it lives.

  ``build`` receives a function returning ``learner.evaluate`` (through a weak reference when
  the cache holds the result) and must not capture the learner itself. Callables that cannot be
  weakly referenced are built afresh on each call.
  """
  evaluate = learner.evaluate
  try:
    get_evaluate = weakref.ref(evaluate)
  except TypeError:
    return build(lambda: evaluate)
  with _PER_EVALUATE_LOCK:
    table = _PER_EVALUATE.setdefault(evaluate, {})
    if key not in table:
      table[key] = build(get_evaluate)
    return table[key]


def _eval_fn(learner: MetaLearner, steps: int | None, batching: str) -> Callable:
  if batching not in ("vmap", "map"):
    raise ValueError(f"evaluation batching must be 'auto', 'vmap' or 'map', got {batching!r}.")

  def build(get_evaluate):
    one = lambda p, t, k: get_evaluate()(p, t, k, steps=steps)
    if batching == "vmap":
      return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
    return jax.jit(lambda p, ts, ks: jax.lax.map(lambda tk: one(p, *tk), (ts, ks)))

  return cached_per_evaluate(learner, ("eval", steps, batching), build)
