"""Meta-training on several devices and several processes (hosts).

metajax does not run a cluster of its own: it is a client of JAX's multi-controller runtime.
Every process runs the same program (``metajax train ...``) on its own devices;
:func:`initialize` connects them (``jax.distributed.initialize``) and from then on
``jax.devices()`` lists the devices of all processes. This module turns a config's device layout
into a :class:`Layout` and gives the trainer the few operations that differ from a one-device
run:

* **Layout.** ``devices`` (``1``, ``N`` or ``"all"``) picks the devices and ``mesh`` names the
  axes of the ``jax.sharding.Mesh`` over them; the task batch is sharded over the ``"tasks"``
  axis (data parallelism over tasks), parameters and optimizer state are replicated (see
  :func:`metajax.make_meta_step`). One device and one process is exactly the single-device
  trainer.
* **Sampling.** Each process samples only its share of the global task batch with
  :meth:`~metajax.data.EpisodeSampler.sample_slice`. Episode ``b`` of step ``s`` depends only on
  ``(seed, s, b)``, so the global batch, and the per-task keys of the meta-step, are the same
  whatever the layout: a run on 4 devices or 2 hosts follows the one-device run up to float
  summation order, and a run can resume on another layout.
* **Evaluation.** Validation and test episodes are sharded the same way (episode ``j`` of the
  evaluation stream depends only on ``j``); a batch that does not split evenly over the devices
  is filled up with the next episodes of the stream, whose results are dropped, so every layout
  scores the same episodes.
* **Who writes.** Process 0 alone writes ``config.json``, the metrics, plots and summary and talks
  to the user; every process takes part in orbax's checkpoint saves (each writes its shards,
  process 0 commits by an atomic rename).
* **Stopping.** ``jax.distributed.initialize`` starts JAX's preemption service: a SIGTERM to any
  process (a scheduler's preemption notice) is spread to all, and
  ``multihost_utils.reached_preemption_sync_point`` names one step at which every process
  stops and saves. Ctrl-C is turned into the same notice. A time budget is agreed at the steps
  where metrics are fetched anyway, so no process waits on another that has left.

References:
  JAX, "Multi-process environments" and ``jax.distributed``; orbax multi-host checkpointing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metajax.core.meta_learner import MetaLearner
from metajax.core.meta_step import TASK_AXIS, cached_per_evaluate, make_meta_step
from metajax.core.types import PyTree, Task
from metajax.data.sampler import EpisodeSampler


class Layout(NamedTuple):
  """Where a run's computation goes.

  Attributes:
    mesh: the device mesh whose ``"tasks"`` axis shards the task batch; ``None`` for one device
      in one process (the plain single-device path).
    process_index: this process (``jax.process_index()``).
    process_count: processes of the run (``jax.process_count()``).
  """

  mesh: Mesh | None
  process_index: int = 0
  process_count: int = 1

  @property
  def primary(self) -> bool:
    """Whether this process writes the run folder's files and talks to the user (process 0)."""
    return self.process_index == 0

  @property
  def shards(self) -> int:
    """Devices the task batch is split over."""
    return 1 if self.mesh is None else int(self.mesh.shape[TASK_AXIS])

  def describe(self) -> str:
    """E.g. ``"4 devices (mesh tasks=4), 2 processes"``."""
    if self.mesh is None:
      return "1 device"
    axes = ", ".join(f"{name}={size}" for name, size in self.mesh.shape.items())
    where = f", {self.process_count} processes" if self.process_count > 1 else ""
    return f"{self.mesh.devices.size} devices (mesh {axes}){where}"


def initialize(*, coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
  """Connects this process to the others of a multi-process run (``jax.distributed``).

  Call it first, before anything computes with JAX (the CLI does so for ``--coordinator``,
  ``--num-processes``, ``--process-id`` and ``--distributed``). With ``auto=True`` and no
  arguments, JAX reads the cluster from the environment (SLURM, Cloud TPU, Open MPI,
  Kubernetes; ``JAX_COORDINATOR_ADDRESS``).

  Args:
    coordinator: ``HOST:PORT`` of process 0, which serves the coordination service there.
    num_processes: processes of the run.
    process_id: this process's index, ``0 <= process_id < num_processes``.
    auto: connect even when no argument is given, reading the cluster from the environment.

  Returns:
    Whether the runtime is now initialized (``False``: single process, nothing asked).

  Raises:
    ValueError: for an incomplete or inconsistent set of arguments.
    RuntimeError: when JAX has already computed something in this process (its backends
      exist), since the runtime must be connected before that.

  Example:
    >>> from metajax.train import distributed  # doctest: +SKIP
    >>> distributed.initialize(coordinator="10.0.0.1:1234", num_processes=2, process_id=0)
    ... # doctest: +SKIP
  """
  explicit = (coordinator, num_processes, process_id)
  if not auto and all(value is None for value in explicit):
    return False
  if jax.distributed.is_initialized():
    return True
  if not auto and (num_processes is None or process_id is None
                   or (coordinator is None and not os.environ.get("JAX_COORDINATOR_ADDRESS"))):
    raise ValueError(
        f"a multi-process run needs the coordinator, the number of processes and this process's "
        f"id, got coordinator={coordinator!r}, num_processes={num_processes!r}, "
        f"process_id={process_id!r}; give all three (--coordinator HOST:PORT --num-processes N "
        "--process-id I), or --distributed to read them from SLURM / Cloud TPU / MPI")
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes must be at least 1, got {num_processes}")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in [0, {num_processes}) for num_processes="
                     f"{num_processes}, got {process_id}")
  from jax._src import xla_bridge  # the only way to ask without creating the backends

  if xla_bridge.backends_are_initialized():
    raise RuntimeError(
        "jax.distributed.initialize must run before JAX computes anything, but this process has "
        "already created its JAX backends; call metajax.train.distributed.initialize(...) at the "
        "very start of the program (metajax train does this for --coordinator/--distributed)")
  explicit = None not in (coordinator, num_processes, process_id)
  # Given all three, JAX would still ask SLURM & co. for this process's local devices (and keep
  # one GPU per process); explicit arguments mean every local device is this process's.
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id,
                             cluster_detection_method="deactivate" if explicit else None)
  return True


def check_layout_keys(devices: Any, mesh: Any) -> None:
  """Checks a config's ``devices`` and ``mesh`` keys without asking JAX for its devices.

  Raises:
    ValueError: naming the key, the value and the fix.
  """
  if not (devices is None or devices == "all" or (
      isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1)):
    raise ValueError(f"config key 'devices' must be 'all', a number of devices >= 1 or None (one "
                     f"device; all of them in a multi-process run), got {devices!r}")
  if not isinstance(mesh, dict):
    raise ValueError(f"config key 'mesh' must be a dict of axis sizes, e.g. {{'tasks': -1}}, got "
                     f"{mesh!r}")
  if mesh:  # the sizes are checked against the device count once JAX knows it
    parse_mesh(mesh, math.prod(s for s in mesh.values() if isinstance(s, int) and s >= 1))


def parse_mesh(mesh: dict, devices: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Axis names and sizes of a config's ``mesh`` over ``devices`` devices.

  ``mesh`` maps axis names to sizes in order; one size may be ``-1`` (the devices left). An
  empty mapping is ``{"tasks": -1}``. The task batch is sharded over ``"tasks"``; parameters
  are replicated over every axis, so any other axis must have size 1.

  Raises:
    ValueError: naming the rule, the value and the fix.
  """
  mesh = dict(mesh) or {TASK_AXIS: -1}
  if TASK_AXIS not in mesh:
    raise ValueError(
        f"config key 'mesh' is {mesh!r} but the mesh needs a {TASK_AXIS!r} axis to shard the task "
        f"batch over; use e.g. mesh.{TASK_AXIS}=-1 (all devices)")
  sizes = {}
  for name, size in mesh.items():
    if not isinstance(name, str) or not isinstance(size, int) or isinstance(size, bool) or (
        size < 1 and size != -1):
      raise ValueError(f"config key 'mesh' maps axis names to sizes >= 1 (or one -1), got "
                       f"{name!r}: {size!r}")
    sizes[name] = size
  if list(sizes.values()).count(-1) > 1:
    raise ValueError(f"config key 'mesh' is {mesh!r}: only one axis may have size -1")
  known = math.prod(s for s in sizes.values() if s != -1)
  if -1 in sizes.values():
    if devices % known:
      raise ValueError(f"config key 'mesh' is {mesh!r}, whose fixed axes ({known} devices) do "
                       f"not divide the {devices} devices; change the sizes or 'devices'")
    sizes = {n: devices // known if s == -1 else s for n, s in sizes.items()}
  if math.prod(sizes.values()) != devices:
    raise ValueError(
        f"config key 'mesh' is {mesh!r}, a mesh of {math.prod(sizes.values())} devices, but the "
        f"run uses {devices} (config key 'devices'); make the sizes multiply to {devices} or use "
        f"-1 for the {TASK_AXIS!r} axis")
  extra = {n: s for n, s in sizes.items() if n != TASK_AXIS and s > 1}
  if extra:
    raise ValueError(
        f"config key 'mesh' is {mesh!r}: axes other than {TASK_AXIS!r} ({extra}) would only "
        "repeat the same work, since parameters are replicated on every device; put the devices "
        f"on the {TASK_AXIS!r} axis")
  return tuple(sizes), tuple(sizes.values())


def device_layout(devices: int | str | None = None, mesh: dict | None = None) -> Layout:
  """The :class:`Layout` of a config's ``devices`` and ``mesh`` keys.

  Args:
    devices: ``"all"`` (every device of every process), ``N`` (``N / process_count`` devices of
      each process) or ``None`` (one device in a single process, all devices in a
      multi-process run).
    mesh: axis sizes (see :func:`parse_mesh`); ``None`` or ``{}``: all devices on ``"tasks"``.

  Returns:
    The layout; its ``mesh`` is ``None`` for a single device in a single process.

  Raises:
    ValueError: when the devices do not exist or do not split evenly over the processes.
  """
  count, index = jax.process_count(), jax.process_index()
  every = jax.devices()
  if devices is None:
    devices = "all" if count > 1 else 1
  if devices == "all":
    chosen = list(every)
  elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
    if devices > len(every) or devices % count:
      raise ValueError(
          f"config key 'devices' is {devices} but this run has {len(every)} device(s) in "
          f"{count} process(es); use 'all' or a number of devices up to {len(every)} that is "
          f"a multiple of {count} (each process contributes the same number)")
    per_process = devices // count
    chosen = [d for p in range(count) for d in
              [d for d in every if d.process_index == p][:per_process]]
  else:
    raise ValueError(f"config key 'devices' must be 'all', a number of devices >= 1 or None, "
                     f"got {devices!r}")
  names, sizes = parse_mesh(mesh or {}, len(chosen))
  if len(chosen) == 1 and count == 1:
    return Layout(None, index, count)
  # Process-major order: each process's devices hold a contiguous block of the task batch.
  chosen.sort(key=lambda d: (d.process_index, d.id))
  return Layout(Mesh(np.asarray(chosen, dtype=object).reshape(sizes), names), index, count)


def check_batch(layout: Layout, batch: int, key: str = "meta_batch") -> None:
  """Raises before compiling when a task batch does not split evenly over the devices."""
  if batch % layout.shards:
    lower = batch - batch % layout.shards
    raise ValueError(
        f"config key {key!r} is {batch}, which does not split evenly over the "
        f"{layout.shards} devices of the {TASK_AXIS!r} axis; use a multiple of {layout.shards} "
        f"(e.g. {lower or layout.shards} or {lower + layout.shards}) or fewer devices")


def check_same_config(layout: Layout, config_json: str) -> None:
  """Raises in every process when the processes were started with different configs.

  Compares the sha256 of each process's config (gathered from all processes), before anything
  is compiled or written.
  """
  if layout.process_count == 1:
    return
  digest = np.frombuffer(hashlib.sha256(config_json.encode()).digest(), np.uint8)
  digests = np.asarray(multihost_utils.process_allgather(digest))
  differing = [p for p in range(layout.process_count) if not np.array_equal(digests[p],
                                                                            digests[0])]
  if differing:
    raise ValueError(
        f"the {layout.process_count} processes were started with different configs: process(es) "
        f"{differing} differ from process 0 (config sha256 {digests[0].tobytes().hex()[:12]} vs "
        f"{digests[differing[0]].tobytes().hex()[:12]}); start every process with the same "
        "config file and the same key=value overrides")


def agree(layout: Layout, flag: bool) -> bool:
  """Whether ``flag`` is set in any process (a collective: every process must call it)."""
  if layout.process_count == 1:
    return bool(flag)
  flags = multihost_utils.process_allgather(np.asarray([bool(flag)], np.int32))
  return bool(np.asarray(flags).any())


def agree_every(layout: Layout, flag: bool, now: bool) -> bool:
  """A wall-clock decision (a time budget) that every process takes at the same step.

  In one process: ``flag``. In several: at steps where ``now`` holds (the same steps in every
  process, e.g. every ``log_every``), whether ``flag`` holds in any process; else ``False``.
  """
  if layout.process_count == 1:
    return bool(flag)
  return bool(now) and agree(layout, flag)


def replicate(layout: Layout, tree: PyTree) -> PyTree:
  """``tree`` placed on every device of the mesh (unchanged without a mesh)."""
  if layout.mesh is None:
    return tree
  sharding = NamedSharding(layout.mesh, PartitionSpec())
  return jax.tree.map(lambda x: jax.device_put(_host(x), sharding), tree)


def to_local(tree: PyTree) -> PyTree:
  """Replicated arrays that span other processes' devices, as this process's copy.

  A replicated global array cannot be fetched as a whole (``np.asarray``) in a multi-process
  run; each process reads its first local shard, which holds all of it.
  """
  return jax.tree.map(_local_copy, tree)


def _local_copy(x):
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if not x.sharding.is_fully_replicated:
      raise ValueError(f"an array of shape {x.shape} is sharded across processes "
                       f"({x.sharding}); only replicated values can be read in one process")
    return x.addressable_data(0)
  return x


def _host(x):
  """A numpy copy of ``x`` (of this process's copy when ``x`` spans several processes)."""
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return x
  return np.asarray(jax.device_get(_local_copy(x)))


def host_value(x) -> np.ndarray:
  """``np.asarray(x)`` that also works for replicated arrays spanning several processes."""
  return _host(x)


def _process_range(layout: Layout, batch: int) -> tuple[int, int]:
  """The contiguous rows of a ``batch``-task array that this process's devices hold."""
  sharding = NamedSharding(layout.mesh, PartitionSpec(TASK_AXIS))
  slices = [index[0] for index in sharding.addressable_devices_indices_map((batch,)).values()]
  start = min(s.start or 0 for s in slices)
  stop = max(batch if s.stop is None else s.stop for s in slices)
  covered = sorted({(s.start or 0, batch if s.stop is None else s.stop) for s in slices})
  if sum(b - a for a, b in covered) != stop - start:
    raise ValueError(f"this process's devices hold rows {covered} of the task batch, which are "
                     "not one contiguous block; order the mesh's devices by process")
  return start, stop


def _global(layout: Layout, local: PyTree, batch: int) -> PyTree:
  sharding = NamedSharding(layout.mesh, PartitionSpec(TASK_AXIS))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
      sharding, x, (batch, *x.shape[1:])), local)


def shard_batch(layout: Layout, tasks: Task) -> Task:
  """A task batch that every process holds whole, as one array sharded over the task axis.

  Each process contributes the rows its devices hold (for a custom loop or a benchmark; the
  trainer samples only those rows, see :func:`sample_tasks`).
  """
  if layout.mesh is None:
    return tasks
  batch = jax.tree.leaves(tasks)[0].shape[0]
  check_batch(layout, batch)
  if layout.process_count == 1:
    return jax.device_put(tasks, NamedSharding(layout.mesh, PartitionSpec(TASK_AXIS)))
  start, stop = _process_range(layout, batch)
  return _global(layout, jax.tree.map(lambda x: x[start:stop], tasks), batch)


def sample_tasks(layout: Layout, sampler: EpisodeSampler, key: jax.Array) -> Task:
  """The task batch ``sampler.sample(key)`` as an array sharded over the mesh's task axis.

  Each process samples only the episodes its devices hold.
  """
  if layout.mesh is None:
    return sampler.sample(key)
  check_batch(layout, sampler.batch_size)
  if layout.process_count == 1:
    return jax.device_put(sampler.sample(key), NamedSharding(layout.mesh,
                                                             PartitionSpec(TASK_AXIS)))
  start, stop = _process_range(layout, sampler.batch_size)
  if not hasattr(sampler, "sample_slice"):  # a sampler that can only draw whole batches
    return shard_batch(layout, sampler.sample(key))
  return _global(layout, sampler.sample_slice(key, start, stop), sampler.batch_size)


def batches(layout: Layout, sampler: EpisodeSampler, key: jax.Array, *, start: int = 0
            ) -> Iterator[Task]:
  """Task batches ``sample_tasks(layout, sampler, fold_in(key, step))`` for ``step >= start``.

  Without a mesh this is ``sampler.iterate(key, start=start)``; like it, the next batch is
  dispatched before the current one is yielded.
  """
  if layout.mesh is None:
    yield from sampler.iterate(key, start=start)
    return
  step = start
  upcoming = sample_tasks(layout, sampler, jax.random.fold_in(key, step))
  while True:
    current = upcoming
    step += 1
    upcoming = sample_tasks(layout, sampler, jax.random.fold_in(key, step))
    yield current


def meta_step(layout: Layout, learner: MetaLearner, optimizer, *, batching: str = "auto",
              check_finite: bool | str = False) -> Callable:
  """:func:`metajax.make_meta_step` over the layout's mesh; metrics come back process-local.

  Returns:
    ``step(state, tasks, key) -> (state, metrics)``; ``state`` must be :func:`replicate` d.
  """
  single = layout.process_count == 1
  step = make_meta_step(learner, optimizer, batching=batching, mesh=layout.mesh,
                        check_finite=check_finite, check_inputs=single)
  if single:
    return step
  checked: set[tuple] = set()

  def local_metrics(state, tasks, key):
    signature = tuple(x.shape for x in jax.tree.leaves(tasks))
    if signature not in checked:  # shapes and label ranges, on this process's first shard
      learner.check_task(jax.tree.map(lambda x: x.addressable_data(0), tasks))
      checked.add(signature)
    state, metrics = step(state, tasks, key)
    local_metrics.batching = step.batching
    return state, to_local(metrics)

  local_metrics.mesh, local_metrics.batching = step.mesh, step.batching
  return local_metrics


def episode_keys(key: jax.Array, first: int, count: int) -> jax.Array:
  """The adaptation keys of evaluation episodes ``first, ..., first + count - 1``.

  Episode ``j`` is adapted with ``fold_in(fold_in(key, j), 1)`` (as the trainer does), a function
  of ``j`` alone, so any slice of episodes gets the same keys in any layout.
  """
  indices = jnp.arange(first, first + count, dtype=jnp.int32)
  return jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(key, j), 1))(indices)


def evaluate_batch(layout: Layout, learner: MetaLearner, params: PyTree, sampler: EpisodeSampler,
                   key: jax.Array, first: int, *, steps: int | None = None,
                   batching: str = "auto") -> dict[str, np.ndarray]:
  """Per-episode metrics of ``sampler.sample_at(key, first)``, the episodes sharded over the mesh.

  Episode ``j`` is the ``j``-th of the stream of ``key`` whatever the batch size (see
  :meth:`~metajax.data.EpisodeSampler.sample_at`) and is adapted with the key of
  :func:`episode_keys`, so the result equals the trainer's one-device evaluation up to float
  summation order. Each process samples only its devices' episodes; when the batch does not
  split evenly over the devices, the next episodes of the stream fill it and their results are
  dropped.

  Returns:
    Metrics with a leading episode axis (``sampler.batch_size``), as numpy arrays, in every
    process.
  """
  from metajax.core.meta_step import evaluate_tasks

  size = sampler.batch_size
  if layout.mesh is None:
    return evaluate_tasks(learner, params, sampler.sample_at(key, first),
                          episode_keys(key, first, size), steps=steps, batching=batching)
  if batching == "auto":
    batching = "map" if jax.default_backend() == "cpu" else "vmap"
  padded = -(-size // layout.shards) * layout.shards
  start, stop = (0, padded) if layout.process_count == 1 else _process_range(layout, padded)
  local = dataclasses.replace(sampler, batch_size=stop - start)
  tasks = local.sample_at(key, first + start)
  learner.check_task(tasks)
  task_keys = jax.random.key_data(episode_keys(key, first + start, stop - start))
  if layout.process_count == 1:
    tasks, task_keys = jax.device_put((tasks, task_keys),
                                      NamedSharding(layout.mesh, PartitionSpec(TASK_AXIS)))
  else:
    tasks, task_keys = _global(layout, (tasks, task_keys), padded)
  fn = _sharded_eval(learner, steps, batching, layout.mesh, jax.random.key_impl(key))
  metrics = fn(replicate(layout, params), tasks, task_keys)
  return {name: _host(value)[:size] for name, value in metrics.items()}


def _sharded_eval(learner: MetaLearner, steps: int | None, batching: str, mesh: Mesh,
                  impl) -> Callable:
  if batching not in ("vmap", "map"):
    raise ValueError(f"evaluation batching must be 'auto', 'vmap' or 'map', got {batching!r}")

  def build(get_evaluate):
    one = lambda p, t, k: get_evaluate()(p, t, jax.random.wrap_key_data(k, impl=impl),
                                         steps=steps)
    if batching == "vmap":
      per_device = jax.vmap(one, in_axes=(None, 0, 0))
    else:
      per_device = lambda p, ts, ks: jax.lax.map(lambda tk: one(p, *tk), (ts, ks))
    spec = PartitionSpec
    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(spec(), spec(TASK_AXIS),
                                                             spec(TASK_AXIS)),
                            out_specs=spec(TASK_AXIS), check_vma=False)
    return jax.jit(sharded, out_shardings=NamedSharding(mesh, spec()))

  # Held only while learner.evaluate lives (see metajax.core.meta_step.cached_per_evaluate).
  return cached_per_evaluate(learner, ("sharded_eval", steps, batching, mesh, impl), build)


class _NullLog:
  """The metrics log of a process that is not process 0: it writes nothing."""

  def write(self, record: dict) -> None:
    del record

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def metrics_log(layout: Layout, run_dir, *, keep_until: int | None = None):
  """The run's :class:`~metajax.train.metrics_log.MetricsLog` in process 0, else a silent log."""
  from metajax.train import metrics_log as log_module

  if not layout.primary:
    return _NullLog()
  return log_module.MetricsLog(run_dir, keep_until=keep_until)


class SyncedStop:
  """SIGTERM/SIGINT in any process stops every process after the same step.

  JAX's preemption service (started by ``jax.distributed.initialize``) catches SIGTERM; the
  coordination service tells every process, and :func:`reached_preemption_sync_point` becomes
  true at one step agreed by all. Ctrl-C (SIGINT) is turned into a SIGTERM to this process, so
  it takes the same path. Call :meth:`check` after every step, in every process.

  Args:
    enabled: install the SIGINT handler (main thread only); SIGTERM is JAX's either way.
  """

  def __init__(self, enabled: bool = True):
    self.reason: str | None = None
    self._previous = None
    self._interrupted = False
    if enabled and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGINT, self._handle)

  def _handle(self, signum, frame):
    if self._interrupted:
      raise KeyboardInterrupt  # a second Ctrl-C forces the exit
    self._interrupted = True
    os.kill(os.getpid(), signal.SIGTERM)

  def check(self, step: int) -> str | None:
    """The stop reason once every process has reached the agreed step, else ``None``."""
    if self.reason is None and multihost_utils.reached_preemption_sync_point(step):
      self.reason = "SIGINT" if self._interrupted else "SIGTERM"
    return self.reason

  def restore(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)

