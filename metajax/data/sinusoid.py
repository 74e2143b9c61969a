"""Sinusoid regression tasks (Finn et al. 2017, Section 5.1), generated on device."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.core._checks import check_steps
from metajax.core.types import Array, PRNGKey, Task


class SinusoidParams(NamedTuple):
  """Amplitude and phase of each task in a batch, ``[batch_size]`` each.

  Attributes:
    amplitude: ``[batch_size]`` amplitudes ``A`` (MAML draws them from ``[0.1, 5.0]``).
    phase: ``[batch_size]`` phases in radians (MAML: ``[0, pi]``).

  Example:
    >>> params = SinusoidParams(jnp.array([2.0]), jnp.array([0.0]))   # y = 2 sin(x)
    >>> sinusoid(params, jnp.full((1, 1, 1), math.pi / 2))
    Array([[[2.]]], dtype=float32)

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.1.
  """

  amplitude: Array
  phase: Array


def sinusoid_params(
    key: PRNGKey,
    batch_size: int,
    *,
    amplitude_range: tuple[float, float] = (0.1, 5.0),
    phase_range: tuple[float, float] = (0.0, math.pi),
) -> SinusoidParams:
  """Draws amplitudes and phases uniformly, as in MAML's sinusoid experiment.

  Args:
    key: PRNG key.
    batch_size: number of tasks.
    amplitude_range: ``A`` is uniform in this interval (MAML: ``[0.1, 5.0]``).
    phase_range: the phase (radians) is uniform in this interval (MAML: ``[0, pi]``).

  Returns:
    :class:`SinusoidParams` with ``[batch_size]`` amplitudes and phases.

  Example:
    >>> params = sinusoid_params(jax.random.key(0), 4)
    >>> params.amplitude.shape, bool(((params.amplitude >= 0.1) & (params.amplitude <= 5)).all())
    ((4,), True)

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.1.
  """
  amp_key, phase_key = jax.random.split(key)
  amplitude = jax.random.uniform(amp_key, [batch_size], minval=amplitude_range[0],
                                 maxval=amplitude_range[1])
  phase = jax.random.uniform(phase_key, [batch_size], minval=phase_range[0],
                             maxval=phase_range[1])
  return SinusoidParams(amplitude, phase)


def sinusoid_tasks(
    key: PRNGKey,
    *,
    batch_size: int,
    shots: int,
    queries: int | None = None,
    x_range: tuple[float, float] = (-5.0, 5.0),
    amplitude_range: tuple[float, float] = (0.1, 5.0),
    phase_range: tuple[float, float] = (0.0, math.pi),
) -> Task:
  """A batch of sinusoid regression tasks ``y = A sin(x - phase)``.

  Pure and jittable: the same key gives the same tasks.

  Args:
    key: PRNG key.
    batch_size: number of tasks.
    shots: K, support points per task.
    queries: query points per task (default ``shots``).
    x_range: inputs are uniform in this interval.
    amplitude_range: A is uniform in this interval (MAML: [0.1, 5.0]).
    phase_range: the phase is uniform in this interval (MAML: [0, pi]).

  Returns:
    A :class:`metajax.Task` batch: ``support_x`` ``[batch_size, shots, 1]``,
    ``support_y`` likewise; query ``[batch_size, queries, 1]``.

  Example:
    >>> tasks = sinusoid_tasks(jax.random.key(0), batch_size=25, shots=10)
    >>> tasks.support_x.shape, tasks.query_y.shape
    ((25, 10, 1), (25, 10, 1))

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.1.
  """
  batch_size = check_steps(batch_size, "batch_size", minimum=1)
  shots = check_steps(shots, "shots", minimum=1)
  queries = shots if queries is None else check_steps(queries, "queries", minimum=1)
  task_key, support_key, query_key = jax.random.split(key, 3)
  params = sinusoid_params(task_key, batch_size, amplitude_range=amplitude_range,
                           phase_range=phase_range)
  support_x = jax.random.uniform(support_key, [batch_size, shots, 1], minval=x_range[0],
                                 maxval=x_range[1])
  query_x = jax.random.uniform(query_key, [batch_size, queries, 1], minval=x_range[0],
                               maxval=x_range[1])
  return Task(support_x, sinusoid(params, support_x), query_x, sinusoid(params, query_x))


def sinusoid(params: SinusoidParams, x: Array) -> Array:
  """Evaluates each task's sinusoid at ``x [batch_size, n, 1]``.

  Args:
    params: the ``[batch_size]`` amplitudes and phases.
    x: inputs ``[batch_size, n, 1]``; row ``b`` is evaluated with task ``b``'s parameters.

  Returns:
    ``y = A_b sin(x - phase_b)``, ``[batch_size, n, 1]``.

  Example:
    >>> params = SinusoidParams(jnp.array([1.0, 3.0]), jnp.array([0.0, math.pi / 2]))
    >>> x = jnp.zeros((2, 1, 1))
    >>> [round(float(y), 4) for y in sinusoid(params, x).ravel()]   # sin(0) and 3 sin(-pi/2)
    [0.0, -3.0]

  References:
    Finn, Abbeel & Levine, ICML 2017, Section 5.1.
  """
  return params.amplitude[:, None, None] * jnp.sin(x - params.phase[:, None, None])
