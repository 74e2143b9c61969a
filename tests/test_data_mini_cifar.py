"""miniImageNet (CSV + images, pickle cache) and CIFAR-FS, on small files in the real formats."""

from __future__ import annotations

import csv
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from metajax.data import load_cifar_fs, load_mini_imagenet
from metajax.data.cifar_fs import CIFAR_FS_SPLITS


def test_cifar_fs_split_is_64_16_20_and_disjoint():
  sizes = {k: len(v) for k, v in CIFAR_FS_SPLITS.items()}
  assert sizes == {"train": 64, "val": 16, "test": 20}
  assert len(set().union(*CIFAR_FS_SPLITS.values())) == 100


def _write_cifar100(path, per_class_train=2, per_class_test=1):
  names = sorted(set().union(*CIFAR_FS_SPLITS.values()))
  rng = np.random.default_rng(0)

  def part(per_class):
    labels = np.repeat(np.arange(100), per_class).tolist()
    data = rng.integers(0, 255, (len(labels), 3072), dtype=np.uint8)
    data[:, 0] = np.asarray(labels)  # red of the top-left pixel = fine label
    return pickle.dumps({b"data": data, b"fine_labels": labels, b"coarse_labels": labels})

  members = {
    "train": part(per_class_train),
    "test": part(per_class_test),
    "meta": pickle.dumps({b"fine_label_names": [n.encode() for n in names]}),
  }
  with tarfile.open(path, "w:gz") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(f"cifar-100-python/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return names


def test_cifar_fs_from_the_python_archive(tmp_path):
  (tmp_path / "cifar100").mkdir()
  names = _write_cifar100(tmp_path / "cifar100" / "cifar-100-python.tar.gz")
  cache = tmp_path / "cache"
  splits = {k: load_cifar_fs(k, data_dir=tmp_path, cache_dir=cache) for k in CIFAR_FS_SPLITS}
  assert splits["train"].images.shape == (64, 3, 32, 32, 3)
  assert splits["test"].images.shape == (20, 3, 32, 32, 3)
  test = splits["test"]
  for c, name in enumerate(test.class_names):  # every image sits under its own fine label
    assert set(test.images[c, :, 0, 0, 0].tolist()) == {names.index(name)}
  assert (cache / "cifar-fs" / "cifar100.npz").is_file()


def test_cifar_fs_truncated_archive(tmp_path):
  (tmp_path / "cifar100").mkdir()
  path = tmp_path / "cifar100" / "cifar-100-python.tar.gz"
  _write_cifar100(path)
  path.write_bytes(path.read_bytes()[:2000])
  with pytest.raises(ValueError, match="corrupt or truncated"):
    load_cifar_fs(data_dir=tmp_path, cache_dir=tmp_path / "cache")


def _write_mini_csv(root, split_classes, per_class=4):
  folder = root / "miniimagenet"
  (folder / "images").mkdir(parents=True)
  (folder / "splits" / "ravi").mkdir(parents=True)
  rng = np.random.default_rng(0)
  for split, classes in split_classes.items():
    with open(folder / "splits" / "ravi" / f"{split}.csv", "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["filename", "label"])
      for c, wnid in enumerate(classes):
        for i in range(per_class):
          filename = f"{wnid}{i:08d}.jpg"
          gray = c == 0 and i == 0
          pixels = rng.integers(0, 255, (20, 24) if gray else (20, 24, 3), dtype=np.uint8)
          Image.fromarray(pixels).save(folder / "images" / filename)
          writer.writerow([filename, wnid])


def test_mini_imagenet_csv_layout(tmp_path):
  split_classes = {"train": ["n01", "n02", "n03"], "test": ["n07", "n08"]}
  _write_mini_csv(tmp_path, split_classes)
  cache = tmp_path / "cache"
  test = load_mini_imagenet("test", image_size=16, data_dir=tmp_path, cache_dir=cache, workers=1)
  assert test.images.shape == (2, 4, 16, 16, 3) and test.class_names == ("n07", "n08")
  assert test.name == "miniimagenet/test"
  again = load_mini_imagenet("test", image_size=16, data_dir=tmp_path, cache_dir=cache)
  np.testing.assert_array_equal(again.images, test.images)
  (tmp_path / "miniimagenet" / "images" / "n0100000002.jpg").unlink()
  with pytest.raises(FileNotFoundError, match=r"1 images listed in .*train\.csv are missing"):
    load_mini_imagenet("train", data_dir=tmp_path, cache_dir=cache, workers=1)


def test_mini_imagenet_pickle_layout(tmp_path):
  folder = tmp_path / "miniimagenet"
  folder.mkdir()
  images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 84, 84, 3), np.uint8)
  content = {"image_data": images, "class_dict": {"n02": [3, 4], "n01": [0, 1, 2]}}
  (folder / "mini-imagenet-cache-val.pkl").write_bytes(pickle.dumps(content))
  val = load_mini_imagenet("val", data_dir=tmp_path)
  assert val.class_names == ("n01", "n02") and val.examples_per_class == (3, 2)
  assert val.class_images(1)[:, 0, 0, 0].tolist() == [3, 4]
  with pytest.raises(FileNotFoundError, match="miniImageNet test not found"):
    load_mini_imagenet("test", data_dir=tmp_path)
