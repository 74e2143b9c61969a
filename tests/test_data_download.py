"""download_omniglot against a local HTTP server (with Range support) serving ../shared/data."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from metajax.data import download_omniglot
from metajax.data.download import download_file, sha256_of

# Every test serves or copies the real archives: without them, skip (naming the download).
pytestmark = pytest.mark.usefixtures("omniglot_root")


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
  """Serves files, honouring ``Range: bytes=N-`` unless ``ranges`` is off; logs Range headers."""

  ranges = True
  seen_ranges: list = []

  def log_message(self, *args) -> None:
    pass

  def do_GET(self) -> None:
    header = self.headers.get("Range")
    type(self).seen_ranges.append(header)
    path = Path(self.translate_path(self.path))
    if not (self.ranges and header and path.is_file()):
      return super().do_GET()
    data = path.read_bytes()
    start = int(header.removeprefix("bytes=").split("-")[0])
    if start >= len(data):
      self.send_response(416)
      self.send_header("Content-Range", f"bytes */{len(data)}")
      self.end_headers()
      return
    self.send_response(206)
    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    self.send_header("Content-Length", str(len(data) - start))
    self.end_headers()
    self.wfile.write(data[start:])


@contextlib.contextmanager
def _serve(directory: Path):
  """Serves ``directory`` on 127.0.0.1 from a thread; yields ``(base_url, handler_class)``."""
  handler = type("Handler", (_RangeHandler,), {"seen_ranges": [], "ranges": True})
  httpd = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
  )
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
  finally:
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def server(data_root):
  with _serve(data_root) as served:
    yield served


def _mirror_sums(data_root: Path) -> dict[str, str]:
  sums = {}
  for line in (data_root / "SHA256SUMS").read_text().splitlines():
    digest, name = line.split()
    sums[Path(name).name.removesuffix(".zip")] = digest
  return sums


def test_download_omniglot_verifies_and_fetches_splits(server, data_root, tmp_path):
  url, _ = server
  fetched = download_omniglot(
    tmp_path / "omniglot",
    base_url=f"{url}/omniglot",
    archives=("images_background", "images_background_small1"),
    sha256=_mirror_sums(data_root),
    splits_url=f"{url}/omniglot/splits/vinyals",
  )
  for stem in ("images_background", "images_background_small1"):
    original = data_root / "omniglot" / f"{stem}.zip"
    assert fetched[stem].read_bytes() == original.read_bytes()
  assert (
    fetched["splits/test"].read_text()
    == (data_root / "omniglot" / "splits" / "vinyals" / "test.txt").read_text()
  )
  assert not list(tmp_path.rglob("*.part"))


def test_official_checksum_of_small_archive(server, tmp_path):
  url, _ = server  # small1 is byte-identical to the official file: the default digest applies
  fetched = download_omniglot(
    tmp_path, base_url=f"{url}/omniglot", archives=("images_background_small1",), splits_url=None
  )
  assert fetched["images_background_small1"].is_file()


def test_resume_uses_range_and_restarts_when_ignored(server, data_root, tmp_path):
  url, handler = server
  original = data_root / "omniglot" / "images_background_small2.zip"
  digest = sha256_of(original)
  for ranges in (True, False):
    handler.ranges, handler.seen_ranges[:] = ranges, []
    target = tmp_path / f"ranges_{ranges}" / "small2.zip"
    target.parent.mkdir()
    target.with_name("small2.zip.part").write_bytes(original.read_bytes()[:100_000])
    download_file(f"{url}/omniglot/images_background_small2.zip", target, sha256=digest)
    assert handler.seen_ranges == ["bytes=100000-"]
    assert target.read_bytes() == original.read_bytes()
  handler.ranges = True
  complete = tmp_path / "complete.zip"  # a complete .part: the server answers 416
  shutil.copy(original, complete.with_name("complete.zip.part"))
  download_file(f"{url}/omniglot/images_background_small2.zip", complete, sha256=digest)
  assert complete.read_bytes() == original.read_bytes()


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
  url, _ = server  # the rebuilt full archive differs from the official digest
  with pytest.raises(ValueError, match="sha256 of .* but ad41ab67.* was expected"):
    download_omniglot(tmp_path, base_url=f"{url}/omniglot", archives=("images_background",))
  assert not list(tmp_path.iterdir())


def test_content_check_rejects_a_wrong_archive(data_root, tmp_path):
  served = tmp_path / "served"
  served.mkdir()  # the small subset posing as the evaluation archive, byte check off
  shutil.copy(
    data_root / "omniglot" / "images_background_small1.zip", served / "images_evaluation.zip"
  )
  with (
    _serve(served) as (url, _),
    pytest.raises(ValueError, match="the official images_evaluation has 20 alphabets"),
  ):
    download_omniglot(
      tmp_path / "out",
      base_url=url,
      archives=("images_evaluation",),
      sha256={"images_evaluation": None},
      splits_url=None,
    )
  assert not list((tmp_path / "out").iterdir())
