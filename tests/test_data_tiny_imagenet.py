"""Tiny-ImageNet on the real train100 archive, and the full official layout written in tmp_path."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from metajax.data import load_tiny_imagenet
from metajax.data.tiny_imagenet import class_split, tiny_imagenet_classes

ARCHIVE = "tiny-imagenet/tiny-imagenet-200-train100.zip"


@pytest.fixture(scope="session")
def tiny_archive(data_root):
  path = data_root / ARCHIVE
  if not path.is_file():
    pytest.skip(f"{path} not found")
  return path


def test_real_archive_splits(tiny_archive):
  splits = {name: load_tiny_imagenet(name) for name in ("train", "val", "test")}
  assert {k: v.images.shape for k, v in splits.items()} == {
    "train": (120, 100, 64, 64, 3),
    "val": (40, 100, 64, 64, 3),
    "test": (40, 100, 64, 64, 3),
  }
  names = [set(ds.class_names) for ds in splits.values()]
  assert not names[0] & names[1] and not names[0] & names[2] and not names[1] & names[2]
  assert len(names[0] | names[1] | names[2]) == 200
  assert splits["test"].images.dtype == np.uint8 and splits["test"].images.max() > 200


def test_grayscale_jpeg_becomes_rgb(tiny_archive):
  everything = tiny_imagenet_classes()
  with zipfile.ZipFile(tiny_archive) as zf:
    wnids = list(everything.class_names)
    for name in sorted(n for n in zf.namelist() if n.endswith(".JPEG")):
      with Image.open(io.BytesIO(zf.read(name))) as image:
        if image.mode == "L":
          break
    else:
      pytest.skip("no grayscale JPEG in this archive")
  wnid = name.split("/")[2]
  files = sorted(n for n in zf.namelist() if f"/{wnid}/images/" in n and n.endswith(".JPEG"))
  pixels = everything.images[wnids.index(wnid), files.index(name)]
  assert pixels.shape == (64, 64, 3)
  np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def _jpeg(rng, gray: bool = False) -> bytes:
  array = rng.integers(0, 255, (64, 64) if gray else (64, 64, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG")
  return buffer.getvalue()


def _write_official(path, wnids, per_class: int, skip_last: bool = False) -> None:
  """The full official layout: wnids, words, train with boxes, val with annotations, test."""
  rng = np.random.default_rng(0)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
    zf.writestr("tiny-imagenet-200/words.txt", "".join(f"{w}\tthing\n" for w in wnids))
    for c, wnid in enumerate(wnids):
      count = per_class - 1 if skip_last and c == len(wnids) - 1 else per_class
      zf.writestr(f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt", "")
      for i in range(count):
        data = _jpeg(rng, gray=(c == 0 and i == 0))
        zf.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_{i}.JPEG", data)
    zf.writestr(
      "tiny-imagenet-200/val/val_annotations.txt", f"val_0.JPEG\t{wnids[0]}\t0\t0\t1\t1\n"
    )
    zf.writestr("tiny-imagenet-200/val/images/val_0.JPEG", _jpeg(rng))
    zf.writestr("tiny-imagenet-200/test/images/test_0.JPEG", _jpeg(rng))


def test_full_official_layout(tiny_archive, tmp_path):
  with zipfile.ZipFile(tiny_archive) as zf:
    wnids = zf.read("tiny-imagenet-200/wnids.txt").decode().split()
  (tmp_path / "tiny-imagenet").mkdir()
  _write_official(tmp_path / "tiny-imagenet" / "tiny-imagenet-200.zip", wnids, per_class=3)
  test = load_tiny_imagenet("test", data_dir=tmp_path, cache_dir=tmp_path / "cache", workers=1)
  assert test.images.shape == (40, 3, 64, 64, 3)  # val/test folders ignored
  assert list(test.class_names) == class_split(wnids)["test"]
  assert list((tmp_path / "cache" / "tiny-imagenet").glob("*.npz"))


def test_incomplete_archive_is_a_clear_error(tiny_archive, tmp_path):
  with zipfile.ZipFile(tiny_archive) as zf:
    wnids = zf.read("tiny-imagenet-200/wnids.txt").decode().split()
  (tmp_path / "tiny-imagenet").mkdir()
  path = tmp_path / "tiny-imagenet" / "tiny-imagenet-200.zip"
  _write_official(path, wnids, per_class=2, skip_last=True)
  with pytest.raises(ValueError, match="with 1 to 2 training images"):
    load_tiny_imagenet(data_dir=tmp_path, cache_dir=tmp_path / "cache", workers=1)


def test_split_is_fixed():
  wnids = [f"n{i:08d}" for i in range(200)]
  split = class_split(list(reversed(wnids)))
  assert split == class_split(wnids)  # order of wnids.txt does not matter
  assert [len(v) for v in split.values()] == [120, 40, 40]
  with pytest.raises(ValueError, match="lists 199 distinct classes"):
    class_split(wnids[:199])
