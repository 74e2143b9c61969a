"""Every shell command and Python block of the README runs (long ones with tiny overrides).

The README is parsed, not copied: each fenced ``bash`` block is split into commands and each
``python`` block is run verbatim, so a command added to the README without a way to run it here
fails :func:`test_every_readme_command_runs` until it gets one (see ``_tiny_command``).
Command 2 is the test suite itself: instead of recursing, the test checks that CI runs the same
install and the same ``python -m pytest``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from metajax.data import _paths

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CI = REPO / ".ci" / "run"
MSE_LINE = re.compile(r"MSE on new tasks after (\d+) adaptation steps: ([\d.]+)")
# Tiny settings appended to the README's long commands (later key=value / flags win).
TINY_TRAIN = ["meta_steps=2", "eval_every=2", "eval_episodes=2", "test_episodes=2",
              "eval_batch=2", "adaptation_steps=1", "adaptation_episodes=2",
              "model_kwargs.filters=4", "time_budget_minutes=None"]


def fenced_blocks(text: str, language: str) -> list[str]:
  """The bodies of the README's fenced blocks of ``language``, in order."""
  return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```", text, re.M | re.S)]


def shell_commands(block: str) -> list[str]:
  """Commands of a bash block: continuations joined, comments dropped, ``&&`` chains split."""
  joined = re.sub(r"\\\n\s*", " ", block)
  commands = []
  for line in joined.splitlines():
    line = re.sub(r"\s+#.*$", "", line).strip()
    if line and not line.startswith("#"):
      commands += [part.strip() for part in line.split("&&")]
  return commands


def test_readme_has_blocks_to_run():
  text = README.read_text()
  assert len(fenced_blocks(text, "python")) >= 1
  commands = [c for b in fenced_blocks(text, "bash") for c in shell_commands(b)]
  assert "metajax sinusoid" in commands and "python -m pytest" in commands
  assert any(c.startswith("metajax predict ") for c in commands)


def _env(**extra: str) -> dict[str, str]:
  cache = _paths.cache_dir()
  return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache / "jax_compile_tests"),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **extra}


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
  done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout[-3000:]}\n" \
                               f"{done.stderr[-3000:]}"
  return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(fenced_blocks(README.read_text(), "python"))))
def test_every_readme_python_block_runs(index, tmp_path, request):
  block = fenced_blocks(README.read_text(), "python")[index]
  if "load_omniglot" in block:
    request.getfixturevalue("omniglot_root")
  out = subprocess.run([sys.executable, "-"], input=block, cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, f"README python block {index} failed:\n{out.stderr[-3000:]}"
  mse = {int(steps): float(value) for steps, value in MSE_LINE.findall(out.stdout)}
  if "adaptation steps" in block:
    # The "Use it" example: adaptation must help, and it must print before and after.
    assert set(mse) == {0, 1, 10}, out.stdout
    assert mse[1] < 0.5 * mse[0] and mse[10] < mse[1], mse


@contextlib.contextmanager
def _serve(directory: Path):
  handler = functools.partial(_QuietHandler, directory=str(directory))
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
  finally:
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args) -> None:
    pass


def _write_image_folders(cwd: Path) -> None:
  """``my_support/<class>/`` (2 images each) and ``my_query/<class>/`` (1 each), 3 classes of
  the Omniglot test split, as Omniglot files draw them (dark ink on white)."""
  from PIL import Image

  from metajax.data import load_omniglot

  test = load_omniglot("test")
  for c in range(3):
    name = test.class_names[c].replace("/", "_")
    for folder, rows in (("my_support", (0, 1)), ("my_query", (2,))):
      (cwd / folder / name).mkdir(parents=True)
      for row in rows:
        pixels = 255 - np.asarray(test.images[c, row, ..., 0])
        Image.fromarray(pixels, mode="L").save(cwd / folder / name / f"{row}.png")


def _tiny_command(command: str, cwd: Path, url: str) -> tuple[list[str], dict[str, str]] | None:
  """The README ``command`` as argv with tiny settings, or ``None`` when it is checked instead."""
  words = shlex.split(command)
  env = _env()
  if words[:2] == ["pip", "install"]:
    spec = words[-1]
    assert spec == "." or spec.startswith(".["), command
    extras = re.findall(r"[\w-]+", spec.removeprefix(".["))
    pyproject = (REPO / "pyproject.toml").read_text()
    for extra in extras:
      assert re.search(rf"^{extra} = \[", pyproject, re.M), f"extra {extra!r} not in pyproject"
    return None
  if words == ["python", "-m", "pytest"]:
    ci = CI.read_text()  # command 2 is this suite: CI must run exactly it, after the same install
    assert re.search(r"pip install -q -e \"\.\[dev,tfds\]\"", ci), ci
    # (environment assignments before it are allowed: CI saves the executed notebooks)
    assert re.search(r"^(\w+=\S+ )*python -m pytest\b", ci, re.M), ci
    return None
  assert words[0] == "metajax", f"no way to run README command {command!r} in this test"
  argv = [sys.executable, "-m", "metajax.cli", *words[1:]]
  action = words[1]
  if action == "sinusoid":
    argv += ["--meta-steps", "20", "--test-tasks", "10", "--no-progress"]
  elif action == "train":
    argv += [*TINY_TRAIN, "--no-progress"]
  elif action == "evaluate":
    argv += ["--episodes", "2"]
  elif action == "bench":
    argv += ["--workloads", "sinusoid_maml_1", "--impls", "metajax", "--repeats", "1",
             "--json", str(cwd / "bench.json")]
  elif words[1:3] == ["data", "download"]:
    sums = cwd / "SHA256SUMS"
    sums.write_text((Path(os.environ["METAJAX_DATA_DIR"]) / "SHA256SUMS").read_text())
    argv += ["--base-url", f"{url}/omniglot", "--sha256", str(sums)]
    env["METAJAX_DATA_DIR"] = str(cwd / "downloaded")
  elif words[1:3] == ["data", "check"]:
    pass
  elif action == "predict":
    _write_image_folders(cwd)
  else:
    raise AssertionError(f"no tiny override for README command {command!r}; add one")
  return argv, env


@pytest.mark.slow
def test_every_readme_command_runs(omniglot_root, tmp_path):
  cwd = tmp_path
  (cwd / "configs").symlink_to(REPO / "configs")
  commands = [c for b in fenced_blocks(README.read_text(), "bash") for c in shell_commands(b)]
  ran = []
  with _serve(omniglot_root.parent) as url:
    for command in commands:
      tiny = _tiny_command(command, cwd, url)
      if tiny is None:
        continue
      argv, env = tiny
      out = _run(argv, cwd, env)
      ran.append((command, out))
  assert (cwd / "downloaded" / "omniglot" / "images_evaluation.zip").read_bytes() == (
      omniglot_root / "images_evaluation.zip").read_bytes()
  predicted = next(out for command, out in ran if command.startswith("metajax predict"))
  assert "3 query images, 3 classes" in predicted and "accuracy" in predicted
  assert "sinusoid_maml_1" in (cwd / "bench.json").read_text()  # bench ran its workload


def test_readme_is_a_front_door():
  """The README stays short (details live in docs/) and its links point at files that exist."""
  text = README.read_text()
  assert len(text.splitlines()) <= 120, "README over 120 lines: move the detail into docs/"
  for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
    if not target.startswith("http"):
      assert (REPO / target).exists(), f"README links to {target}, which does not exist"
