"""A new user's first hour: data location and download, skips without data, plain scripts,
``metajax bench`` options, and what training prints."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from metajax.cli import main
from metajax.data import _paths

REPO = Path(__file__).resolve().parents[1]
GUARDLESS = 'import metajax\nprint(metajax.data.load_omniglot("evaluation").images.shape)\n'


def test_default_data_folder_is_in_home_and_the_env_overrides(monkeypatch, tmp_path):
  monkeypatch.delenv("METAJAX_DATA_DIR", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert _paths.default_data_dir() == tmp_path / "metajax_data"
  with pytest.raises(FileNotFoundError, match="metajax data download omniglot"):
    _paths.data_dir()
  monkeypatch.setenv("METAJAX_DATA_DIR", str(tmp_path / "elsewhere"))
  assert _paths.default_data_dir() == tmp_path / "elsewhere"


@contextlib.contextmanager
def _serve(directory: Path):
  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
      pass

  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
  finally:
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_data_download_omniglot_fills_the_default_folder(omniglot_root, monkeypatch, tmp_path,
                                                         capsys):
  """`metajax data download omniglot` from a local mirror (a copy of the real archives)."""
  sums = tmp_path / "SHA256SUMS"
  sums.write_text((omniglot_root.parent / "SHA256SUMS").read_text())
  monkeypatch.delenv("METAJAX_DATA_DIR", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  with _serve(omniglot_root) as url:
    assert main(["data", "download", "omniglot", "--base-url", url, "--sha256", str(sums)]) == 0
  out = capsys.readouterr().out
  target = tmp_path / "metajax_data" / "omniglot"
  assert f"into {target}" in out and out.rstrip().endswith("done")
  for name in ("images_background.zip", "images_evaluation.zip", "splits/vinyals/test.txt"):
    assert (target / name).read_bytes() == (omniglot_root / name).read_bytes(), name
  from metajax.data.omniglot import _read_split

  assert len(_read_split(tmp_path / "metajax_data", "test")) == 1692
  with _serve(tmp_path / "nothing") as url:  # a mirror without the files: a clear error
    assert main(["data", "download", "omniglot", "--data-dir", str(tmp_path / "x"),
                 "--base-url", url]) == 1
  assert "metajax data download: HTTP Error 404" in capsys.readouterr().err


def test_without_data_the_data_tests_skip_naming_the_download(tmp_path):
  env = {**os.environ, "METAJAX_DATA_DIR": str(tmp_path / "empty"),
         "METAJAX_CACHE_DIR": str(tmp_path / "cache")}
  (tmp_path / "empty").mkdir()
  done = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
       "tests/test_data_omniglot.py", "tests/test_predict.py"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "skipped" in done.stdout and "failed" not in done.stdout
  assert "metajax data download omniglot" in done.stdout


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_plain_script_without_main_guard_decodes_on_a_cold_cache(how, omniglot_root, tmp_path):
  """Decoding runs in threads: nothing re-runs a guard-less script (issue: BrokenProcessPool)."""
  env = {**os.environ, "METAJAX_CACHE_DIR": str(tmp_path / "cold_cache")}
  script = tmp_path / "script.py"
  script.write_text(GUARDLESS)
  argv, stdin = ([sys.executable, str(script)], None) if how == "file" else (
      [sys.executable, "-"], GUARDLESS)
  done = subprocess.run(argv, input=stdin, cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip() == "(659, 20, 28, 28, 1)"
  assert list((tmp_path / "cold_cache" / "omniglot").glob("*.npz"))


def test_bench_passes_every_option_to_run_all(capfd):
  # An unknown workload makes run_all.py stop before timing anything; it must see --quick too.
  assert main(["bench", "--quick", "--workloads", "no_such_workload"]) == 2
  err = capfd.readouterr().err
  assert "unknown workloads ['no_such_workload']" in err
  assert "unrecognized arguments" not in err
  with pytest.raises(SystemExit):
    main(["bench", "--help"])
  assert "usage: metajax bench" in capfd.readouterr().out


def test_header_names_train_and_test_ways():
  from metajax.cli import _episodes
  from metajax.train import Config

  proto = Config(algorithm="protonet", ways=60, shots=1, test_ways=5)
  assert _episodes(proto) == "trains 60-way 1-shot, tests 5-way 1-shot"
  assert _episodes(Config(algorithm="maml", ways=5, shots=1)) == "5-way 1-shot"


def test_progress_total_is_where_the_time_budget_stops():
  from metajax.train import Config
  from metajax.train.trainer import _budget_total

  config = Config(meta_steps=60_000, time_budget_minutes=60)
  # 2.5 steps/s, 10 minutes in at step 1,500: 50 minutes left stop the run at step 9,000.
  assert _budget_total(config, 600.0, 1500, 2.5) == 9000
  assert _budget_total(config, 600.0, 1500, 100.0) == 60_000  # meta_steps come first
  assert _budget_total(config, 4000.0, 1500, 2.5) == 1500  # over budget: stops now
  assert _budget_total(config.replace(time_budget_minutes=None), 600.0, 1500, 2.5) == 60_000
