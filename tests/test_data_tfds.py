"""TFDS adapter: a clear ImportError without the extra; real reads when it is installed.

The real tests prepare TFDS ``omniglot`` (all four splits, ~38k images, ~30-60 s) once per session
from the archives in ``../shared/data/omniglot`` with :func:`prepare_tfds_omniglot`, offline and
without TensorFlow, into a temporary folder, then read it back with :func:`from_tfds`.
"""

from __future__ import annotations

import importlib.util
import io
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metajax.data import from_tfds, omniglot_characters, prepare_tfds_omniglot

_HAS_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None
# split -> (characters, archive)
_SPLITS = {
  "train": (964, "images_background"),
  "test": (659, "images_evaluation"),
  "small1": (136, "images_background_small1"),
  "small2": (156, "images_background_small2"),
}


@pytest.mark.skipif(_HAS_TFDS, reason="tensorflow-datasets present")
def test_missing_extra_is_a_clear_error(tmp_path):
  with pytest.raises(ImportError, match=r"pip install 'metajax\[tfds\]'"):
    from_tfds("omniglot", split="test")
  with pytest.raises(ImportError, match=r"pip install 'metajax\[tfds\]'"):
    prepare_tfds_omniglot(tmp_path, tmp_path)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory, omniglot_root: Path) -> Path:
  """A TFDS data folder holding omniglot prepared from the local archives."""
  pytest.importorskip("tensorflow_datasets")
  data_dir = tmp_path_factory.mktemp("tfds")

  def no_network(*args, **kwargs):
    raise AssertionError(f"network access while preparing: {args}")

  with pytest.MonkeyPatch.context() as patch:  # offline: any connection attempt fails the test
    patch.setattr(socket.socket, "connect", no_network)
    patch.setattr(socket, "getaddrinfo", no_network)
    prepared = prepare_tfds_omniglot(omniglot_root, data_dir)
  assert prepared == data_dir / "omniglot" / "3.0.0"
  return data_dir


@pytest.fixture(scope="session")
def tfds_train(tfds_dir: Path):
  return from_tfds("omniglot", split="train", data_dir=tfds_dir)


@pytest.mark.slow
def test_prepared_offline_as_array_record(tfds_dir):
  tfds = pytest.importorskip("tensorflow_datasets")
  folder = tfds_dir / "omniglot" / "3.0.0"
  assert sorted(p.name for p in folder.glob("*.array_record-*")) == [
    f"omniglot-{s}.array_record-00000-of-00001" for s in ("small1", "small2", "test", "train")
  ]
  assert not [p for p in tfds_dir.rglob("*") if p.is_file() and "downloads" in p.parts]
  info = tfds.builder("omniglot", data_dir=tfds_dir).info
  assert info.features["label"].num_classes == 1623
  assert info.features["alphabet"].num_classes == 50
  for split, (characters, _) in _SPLITS.items():
    assert info.splits[split].num_examples == characters * 20
    assert len(tfds.data_source("omniglot", split=split, data_dir=tfds_dir)) == characters * 20


@pytest.mark.slow
def test_prepared_again_is_reused(tfds_dir, omniglot_root):
  folder = tfds_dir / "omniglot" / "3.0.0"
  before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
  assert prepare_tfds_omniglot(omniglot_root, tfds_dir) == folder
  assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test", "small1"])
def test_splits_read_as_dense_class_datasets(tfds_dir, tfds_train, split):
  dataset = (
    tfds_train if split == "train" else from_tfds("omniglot", split=split, data_dir=tfds_dir)
  )
  characters, _ = _SPLITS[split]
  assert dataset.num_classes == characters
  assert dataset.is_dense
  assert dataset.examples_per_class == (20,) * characters
  assert dataset.images.shape == (characters, 20, 105, 105, 3)
  assert dataset.images.dtype == np.uint8
  some = dataset.images[:: max(1, characters // 20)]
  assert set(np.unique(some).tolist()) == {0, 255}  # 0 ink, 255 background
  assert (some[..., 1:] == some[..., :1]).all()  # gray in RGB
  assert all("_" in n for n in dataset.class_names)  # TFDS's "Alphabet_<k>" names


def _sorted_stack(images: np.ndarray) -> np.ndarray:
  """Drawing order is not kept by TFDS (it shuffles records), so compare sorted stacks."""
  return np.stack(sorted(images, key=lambda a: a.tobytes()))


def _archive_name(tfds_name: str) -> str:
  alphabet, k = tfds_name.rsplit("_", 1)
  return f"{alphabet}/character{int(k) + 1:02d}"


@pytest.mark.slow
def test_images_equal_the_official_pngs_and_metajax_loader(tfds_train, omniglot_root):
  """Pixels are exactly the archive's PNGs; resized, exactly ``omniglot_characters``'s."""
  ours = omniglot_characters("images_background")  # 28x28, ink 255: the session's cached arrays
  picked = list(range(0, tfds_train.num_classes, 97))
  with zipfile.ZipFile(omniglot_root / "images_background.zip") as zf:
    names = zf.namelist()
    for c in picked:
      character = _archive_name(tfds_train.class_names[c])
      tfds_gray = tfds_train.class_images(c)[..., 0]
      members = [n for n in names if n.startswith(f"images_background/{character}/")]
      members = [n for n in members if n.endswith(".png")]
      assert len(members) == 20
      official = np.stack(
        [np.asarray(Image.open(io.BytesIO(zf.read(m))).convert("L")) for m in members]
      )
      np.testing.assert_array_equal(_sorted_stack(tfds_gray), _sorted_stack(official))
      # omniglot_characters: convert("L"), Lanczos resize to 28, invert (ink 255).
      resized = np.stack(
        [
          255 - np.asarray(Image.fromarray(a).resize((28, 28), Image.Resampling.LANCZOS))
          for a in tfds_gray
        ]
      )
      expected = ours.class_images(ours.class_names.index(character))[..., 0]
      np.testing.assert_array_equal(_sorted_stack(resized), _sorted_stack(expected))
