"""Omniglot loading on the real archives: counts, splits, pixels, cache and errors."""

from __future__ import annotations

import shutil
import time
import zipfile

import numpy as np
import pytest

from metajax.data import load_omniglot, omniglot_characters


def test_archives_counts_shapes_and_pixels(omniglot_splits):
  background = omniglot_characters("images_background")
  evaluation = omniglot_characters("images_evaluation")
  assert background.images.shape == (964, 20, 28, 28, 1)
  assert evaluation.images.shape == (659, 20, 28, 28, 1)
  assert len({n.split("/")[0] for n in background.class_names}) == 30
  assert len({n.split("/")[0] for n in evaluation.class_names}) == 20
  for ds in (background, evaluation):
    assert ds.images.dtype == np.uint8
    ink = ds.images.astype(np.float32) / 255
    assert ink.max() == 1.0 and ink.min() == 0.0
    assert 0.02 < ink.mean() < 0.2  # ink = 1 on a 0 background: strokes are a small fraction
    assert (ds.images[:, :, 0, 0] == 0).mean() > 0.95  # corners are background


def test_vinyals_split_sizes_and_disjointness(omniglot_splits):
  sizes = {name: ds.num_classes for name, ds in omniglot_splits.items()}
  assert sizes == {"train": 4112, "val": 688, "test": 1692, "trainval": 4800}
  names = {name: set(ds.class_names) for name, ds in omniglot_splits.items()}
  assert not names["train"] & names["val"]
  assert not names["train"] & names["test"]
  assert not names["val"] & names["test"]
  assert names["trainval"] == names["train"] | names["val"]
  characters = {name: {c.rsplit("/", 1)[0] for c in n} for name, n in names.items()}
  assert not characters["train"] & characters["test"]  # rotations never leak across splits
  evaluation = set(omniglot_characters("images_evaluation").class_names)
  assert characters["test"] <= evaluation
  assert len({c.split("/")[0] for c in characters["test"]}) == 13
  for ds in omniglot_splits.values():
    assert ds.images.shape[1:] == (20, 28, 28, 1)


def test_rotated_classes_are_rotated_copies(omniglot_splits):
  train = omniglot_splits["train"]
  index = {name: i for i, name in enumerate(train.class_names)}
  base = train.images[index["Angelic/character01/rot000"]]
  for k in (1, 2, 3):
    rotated = train.images[index[f"Angelic/character01/rot{90 * k:03d}"]]
    np.testing.assert_array_equal(rotated, np.rot90(base, k, axes=(1, 2)))


def test_background_evaluation_split(omniglot_splits):
  assert load_omniglot("background").num_classes == 964
  evaluation = load_omniglot("evaluation")
  assert evaluation.num_classes == 659 and evaluation.name == "omniglot/evaluation"


def test_cached_load_is_fast_and_identical(omniglot_splits):
  start = time.perf_counter()
  again = load_omniglot("test")
  assert time.perf_counter() - start < 2.0
  np.testing.assert_array_equal(again.images, omniglot_splits["test"].images)
  assert again.class_names == omniglot_splits["test"].class_names


def test_unknown_split_is_a_clear_error(omniglot_splits):
  with pytest.raises(ValueError, match="split='testing' is not an Omniglot split"):
    load_omniglot("testing")


def test_missing_data_dir_names_every_place(tmp_path, monkeypatch):
  missing = tmp_path / "nowhere"
  monkeypatch.setenv("METAJAX_DATA_DIR", str(missing))
  with pytest.raises(FileNotFoundError, match="download_omniglot") as err:
    load_omniglot("background", cache_dir=tmp_path / "cache")
  assert str(missing) in str(err.value)


def test_missing_archive(tmp_path):
  (tmp_path / "omniglot").mkdir()
  with pytest.raises(FileNotFoundError, match=r"images_background\.zip not found"):
    omniglot_characters(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_truncated_zip_is_a_clear_error(omniglot_root, tmp_path):
  (tmp_path / "omniglot").mkdir()
  data = (omniglot_root / "images_background.zip").read_bytes()
  (tmp_path / "omniglot" / "images_background.zip").write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="corrupt or truncated"):
    omniglot_characters(data_dir=tmp_path, cache_dir=tmp_path / "cache")
  assert not list((tmp_path / "cache").rglob("*.npz"))


def test_wrong_counts_are_a_clear_error(omniglot_root, tmp_path):
  (tmp_path / "omniglot").mkdir()
  shutil.copy(
    omniglot_root / "images_background_small1.zip", tmp_path / "omniglot" / "images_background.zip"
  )
  with pytest.raises(ValueError, match="the official images_background has 30 alphabets"):
    omniglot_characters(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_unreadable_image_is_named(omniglot_root, tmp_path):
  (tmp_path / "omniglot").mkdir()
  target = tmp_path / "omniglot" / "images_background.zip"
  with (
    zipfile.ZipFile(omniglot_root / "images_background.zip") as src,
    zipfile.ZipFile(target, "w") as dst,
  ):
    names = sorted(n for n in src.namelist() if n.endswith(".png"))
    broken = names[0]
    for info in src.infolist():
      dst.writestr(info, b"not a png" if info.filename == broken else src.read(info))
  with pytest.raises(ValueError, match=f"cannot decode image '{broken}'"):
    omniglot_characters(data_dir=tmp_path, cache_dir=tmp_path / "cache", workers=1)
  assert not list((tmp_path / "cache").rglob("*.npz"))
