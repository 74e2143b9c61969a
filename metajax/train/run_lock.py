"""One writer per run folder: a lock file naming its owner, stale locks taken over.

``train`` holds ``<run_dir>/run.lock`` while it writes. The file says who holds it (pid, host,
start time, command line). Two mechanisms decide whether a lock is held:

* an exclusive ``fcntl.flock`` on the open lock file, held for the writer's lifetime. The kernel
  releases it when the process ends in any way (SIGKILL included), so a lock file left behind by a
  dead process is free to take: a *stale* lock, taken over with a message naming the old owner.
* where ``flock`` is not available (some network file systems), the pid written in the file: on
  the same host, a lock whose process no longer runs is stale; a lock held from another host is
  respected (it cannot be checked from here), and the message says how to remove it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

try:
  import fcntl
except ImportError:  # pragma: no cover - Windows
  fcntl = None

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
  """Another process is writing to the run folder."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _read_owner(path: Path) -> dict:
  try:
    owner = json.loads(path.read_text() or "{}")
    return owner if isinstance(owner, dict) else {}
  except (OSError, ValueError):
    return {}


def _describe(owner: dict) -> str:
  if not owner:
    return "an unknown process"
  started = owner.get("started")
  when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if started else ""
  return f"pid {owner.get('pid')} on host {owner.get('host')!r}{when}"


class RunLock:
  """An exclusive lock on a run folder (a context manager; also :meth:`acquire`/:meth:`release`).

  Args:
    run_dir: the run folder (created if needed).
    report: called with a message when a stale lock is taken over.

  Raises:
    RunLockedError: from :meth:`acquire`, when another live process holds the folder; the
      message names the owner, the lock file and how to proceed.

  Example:
    >>> with RunLock("runs/x"):  # doctest: +SKIP
    ...   ...  # write to runs/x; a second RunLock("runs/x") raises RunLockedError meanwhile
  """

  def __init__(self, run_dir: str | os.PathLike, *, report=None):
    self.path = Path(run_dir) / LOCK_NAME
    self._report = report or (lambda message: None)
    self._fd: int | None = None

  def acquire(self) -> RunLock:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      previous = _read_owner(self.path)
      if not self._lock_fd(fd, previous):
        raise RunLockedError(self._refusal(previous))
      if previous.get("pid") is not None:
        self._report(f"took over the stale lock {self.path} of {_describe(previous)}, which "
                     "is no longer running")
      owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
               "command": " ".join(sys.argv)}
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(owner).encode(), 0)
      os.fsync(fd)
    except BaseException:
      os.close(fd)
      raise
    self._fd = fd
    return self

  def _lock_fd(self, fd: int, previous: dict) -> bool:
    """True when this process now owns the lock."""
    if fcntl is not None:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
      except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
          return False
        # flock unsupported here: fall back to the pid written in the file.
    pid, host = previous.get("pid"), previous.get("host")
    if pid is None or pid == os.getpid():
      return True
    return host == socket.gethostname() and not _pid_alive(int(pid))

  def _refusal(self, owner: dict) -> str:
    return (f"run folder {self.path.parent} is in use by {_describe(owner)} (lock file "
            f"{self.path}): two writers would interleave its metrics and checkpoints. Wait for "
            f"that run to finish or stop it (kill {owner.get('pid', 'PID')}), or use another "
            f"run_dir; if that process is gone (e.g. it ran on another machine), delete "
            f"{self.path}")

  def release(self) -> None:
    if self._fd is None:
      return
    with contextlib.suppress(OSError):
      os.ftruncate(self._fd, 0)  # an empty file: nobody holds it
    os.close(self._fd)  # closing drops the flock
    self._fd = None

  def __enter__(self) -> RunLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
