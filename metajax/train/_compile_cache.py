"""JAX's persistent compilation cache, on for ``metajax train`` and :func:`metajax.train.train`.

XLA compiles the meta-step, the evaluation functions and the small programs around them afresh in
every process. JAX can keep the compiled executables on disk and load them on the next run
(its *persistent compilation cache*); metajax turns that on, in ``<cache dir>/jax``
(``$METAJAX_CACHE_DIR/jax``, else ``~/.cache/metajax/jax``), so that a second run of the same
config, a resumed run, ``metajax evaluate`` and ``metajax predict`` load their programs instead of
compiling them.

* **Your own setting wins.** When JAX's cache folder is already set
  (``JAX_COMPILATION_CACHE_DIR``, or ``jax.config.update("jax_compilation_cache_dir", ...)`` before
  the first call), metajax leaves it, and JAX's other cache settings, as they are.
* **Opt out** with ``METAJAX_COMPILATION_CACHE=0`` (also ``false``/``no``/``off``); JAX's own
  ``JAX_ENABLE_COMPILATION_CACHE=false`` turns it off too.
* **What is cached.** Every program, however fast it compiled and however small. JAX's default
  caches only programs that took a second to compile; even a 0.1 s floor left out 30 of the 44
  programs of a MAML 5w1s run, whose compiling took about 1 s of the second run's 1.8 s on a
  loaded 2-core CPU, while reading all 44 back took 0.6 CPU-seconds. A value set through JAX
  (``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``, ``jax.config.update``) is kept.
* **Once per process.** JAX opens the cache folder at the first compilation that uses it, and
  keeps it: the first call that turns the cache on chooses the folder for the process (a later
  ``METAJAX_CACHE_DIR`` does not move it). Turning it on after JAX has compiled something
  without a cache folder works: the later compilations are cached.
* The folder is not bounded in size: every new shape or config adds entries (a few MB for a
  meta-step). Delete it at any time; the next run compiles again.

JAX treats the cache folder as trusted code: do not point it at a folder others can write.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from metajax.data import _paths

ENV = "METAJAX_COMPILATION_CACHE"
SUBDIR = "jax"
# Cache everything: which programs are cached then does not depend on how loaded the machine
# was when they compiled (measurements: docs/guide/training_runs.md).
MIN_COMPILE_TIME_SECS = 0.0
_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")
# JAX's defaults; a value that differs was set by the user and is kept.
_JAX_DEFAULTS = {"jax_persistent_cache_min_compile_time_secs": 1.0,
                 "jax_persistent_cache_min_entry_size_bytes": 0}
_OURS = {"jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_TIME_SECS,
         "jax_persistent_cache_min_entry_size_bytes": -1}  # -1: no size floor, none added by JAX


def enable_compilation_cache(cache_dir: str | os.PathLike | None = None) -> Path | None:
  """Turns on JAX's persistent compilation cache in ``<cache_dir>/jax``, unless told not to.

  Safe to call at any time and any number of times: it only sets JAX config values, and only
  when no cache folder is set yet (see the module docstring).

  Args:
    cache_dir: metajax's cache folder; default :func:`metajax.data.cache_dir`
      (``$METAJAX_CACHE_DIR``, else ``~/.cache/metajax``).

  Returns:
    The folder JAX caches compilations in (the one set before, or ``<cache_dir>/jax``), or
    ``None`` when the cache is off (``METAJAX_COMPILATION_CACHE=0`` or JAX's cache disabled).

  Raises:
    ValueError: when ``$METAJAX_COMPILATION_CACHE`` is neither on nor off.

  Example:
    >>> enable_compilation_cache()  # in a new process, with no JAX cache folder set
    ... # doctest: +SKIP
    PosixPath('/home/me/.cache/metajax/jax')
  """
  setting = os.environ.get(ENV, "").strip().lower()
  if setting in _OFF:
    return None
  if setting not in _ON:
    raise ValueError(
        f"{ENV}={os.environ[ENV]!r} is neither on nor off; set it to 0 to turn metajax's JAX "
        "compilation cache off, or unset it (or 1) to keep it on")
  if not jax.config.jax_enable_compilation_cache:
    return None
  current = jax.config.jax_compilation_cache_dir
  if current:
    return Path(current)
  folder = _paths.cache_dir(cache_dir) / SUBDIR
  for name, value in _OURS.items():
    if name.upper() not in os.environ and getattr(jax.config, name) == _JAX_DEFAULTS[name]:
      jax.config.update(name, value)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  return folder
