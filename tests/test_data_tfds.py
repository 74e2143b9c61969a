"""TFDS adapter: a clear ImportError without the extra; real reads when it is installed."""

from __future__ import annotations

import importlib.util

import pytest

from metajax.data import from_tfds


@pytest.mark.skipif(
  importlib.util.find_spec("tensorflow_datasets") is not None, reason="tensorflow-datasets present"
)
def test_missing_extra_is_a_clear_error():
  with pytest.raises(ImportError, match=r"pip install 'metajax\[tfds\]'"):
    from_tfds("omniglot", split="test")


def test_prepared_dataset_reads_as_class_dataset(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  try:
    source = tfds.data_source("omniglot", split="small1")
  except Exception as err:  # noqa: BLE001 - any reason the prepared data is not there
    pytest.skip(f"TFDS omniglot not prepared in the default TFDS data dir: {err}")
  dataset = from_tfds("omniglot", split="small1")
  assert sum(dataset.examples_per_class) == len(source)
  assert dataset.image_shape == (105, 105, 3)
