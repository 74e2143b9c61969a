"""Use a trained run: rebuild its learner and parameters, and classify a folder of images.

A run folder written by :func:`metajax.train.train` holds ``config.json`` and orbax checkpoints;
:func:`load_run` turns them back into ``(learner, params, config)``, the same values the trainer
tested. :func:`classify_folders` is what ``metajax predict`` runs: support images in one
sub-folder per class, query images in a folder, predictions per query image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.meta_learner import MetaLearner
from metajax.core.types import Task
from metajax.data import _io
from metajax.train import registry
from metajax.train.checkpoint import Checkpointer
from metajax.train.config import Config, validate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# How each dataset's loader turns an image file into pixels, besides its size and channels:
# Omniglot's files draw dark ink on white, and the loader stores ink as 255 (see omniglot.py).
_INVERT = {"omniglot": True}


def load_run(run_dir: str | os.PathLike, checkpoint: str | int = "best", *,
             ways: int | None = None) -> tuple[MetaLearner, object, Config]:
  """Rebuilds a trained run's learner and restores its meta-parameters.

  Args:
    run_dir: a run folder written by :func:`metajax.train.train` (``config.json`` and
      ``checkpoints/``).
    checkpoint: ``"best"`` (highest validation accuracy; the newest when none was validated),
      ``"last"``, or a step number.
    ways: classes per episode the learner will score (default: the run's test ways). Metric
      learners take any number; gradient-based learners only their head's (the run's ``ways``).

  Returns:
    ``(learner, params, config)``: the learner the trainer tested with, the checkpoint's
    meta-parameters, and the run's config (``test_ways`` set to ``ways`` when given).

  Raises:
    FileNotFoundError: when ``run_dir`` has no ``config.json``.
    CheckpointError: when it holds no checkpoint, or the chosen one cannot be restored.
    ValueError: for an unknown step, or ``ways`` that the learner cannot take.

  Example:
    >>> learner, params, config = load_run("runs/protonet_omniglot_5w1s")  # doctest: +SKIP
    >>> head = learner.adapt(params, support_x, support_y, key)  # doctest: +SKIP
    >>> logits = learner.predict(params, head, query_x)  # doctest: +SKIP
  """
  from metajax.train.trainer import _setup

  run_dir = Path(run_dir)
  config = read_run_config(run_dir)
  if ways is not None:
    config = validate(config.replace(test_ways=ways))
  if checkpoint not in ("best", "last") and not isinstance(checkpoint, int):
    raise ValueError(f"checkpoint={checkpoint!r} must be 'best', 'last' or a step number")
  setup = _setup(config)
  checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.keep_checkpoints)
  try:
    params = checkpointer.restore(checkpointer.choose(checkpoint), setup.template).params
  finally:
    checkpointer.close()
  return setup.eval_learner, params, config


def read_run_config(run_dir: str | os.PathLike) -> Config:
  """The validated config of a run folder.

  Raises:
    FileNotFoundError: when ``run_dir`` has no ``config.json``.
  """
  config_path = Path(run_dir) / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} not found; is {run_dir} a metajax run folder (made "
                            "by 'metajax train')?")
  return validate(Config.from_dict(json.loads(config_path.read_text())))


class Prediction(NamedTuple):
  """One query image's predicted class.

  Attributes:
    path: the image file.
    predicted: the predicted class (a support sub-folder's name).
    label: the true class when the image lies in a sub-folder named like a support class, else
      ``None``.
    scores: the learner's output for each class, in the order of ``classes``.

  Example:
    The accuracy of :func:`classify_folders`' predictions over the labelled query images:

    >>> import numpy as np
    >>> predictions = [Prediction(Path("query/cat/1.png"), "cat", "cat", np.array([2.0, 0.1])),
    ...                Prediction(Path("query/dog/1.png"), "cat", "dog", np.array([0.7, 0.5]))]
    >>> labelled = [p for p in predictions if p.label is not None]
    >>> sum(p.predicted == p.label for p in labelled) / len(labelled)
    0.5

  References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (classifying new
    classes from a labelled support set).
  """

  path: Path
  predicted: str
  label: str | None
  scores: np.ndarray


def image_files(folder: str | os.PathLike) -> list[Path]:
  """Image files under ``folder`` (recursively, sorted; hidden files skipped)."""
  folder = Path(folder)
  return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_SUFFIXES)


def read_images(paths: Sequence[Path], config: Config) -> np.ndarray:
  """Decodes image files as the run's dataset loader does: float32 ``[n, H, W, C]`` in [0, 1].

  Images are converted to the dataset's channels (gray or RGB), resized to its size with
  Lanczos filtering, and for Omniglot inverted (files draw dark ink on white; the loader stores
  ink as 1.0), so a file in the dataset's own format gives the pixels training saw.
  """
  height, width, channels = registry.image_shape(config)
  mode = "L" if channels == 1 else "RGB"
  invert = _INVERT.get(config.dataset, False)
  arrays = [_io.decode_image(p.read_bytes(), where=str(p), mode=mode, size=(width, height),
                             invert=invert) for p in paths]
  return np.stack(arrays).astype(np.float32) * np.float32(1.0 / 255.0)


def classify_folders(run_dir: str | os.PathLike, support: str | os.PathLike,
                     query: str | os.PathLike, *, checkpoint: str | int = "best",
                     steps: int | None = None, seed: int = 0) -> tuple[list[str],
                                                                   list[Prediction]]:
  """Classifies the images in ``query`` by the classes of ``support`` with a trained run.

  Args:
    run_dir: the run folder.
    support: a folder with one sub-folder per class (its name is the class), each holding that
      class's support images.
    query: a folder of images to classify (sub-folders allowed; one named like a support class
      gives its images that true label, and then the accuracy can be computed).
    checkpoint: as in :func:`load_run`.
    steps: test-time inner steps of gradient-based learners (default: the run's).
    seed: the key of the adaptation (only stochastic learners use it).

  Returns:
    ``(classes, predictions)``: the sorted class names and one :class:`Prediction` per query
    image, in sorted path order. The query images are scored as one task with
    ``MetaLearner.predict_task``, exactly as ``metajax evaluate`` scores an
    episode's queries (with ``batch_norm="transductive"``, a metric learner normalises the
    support and all query images as one batch), so on the same episode the two agree.

  Raises:
    ValueError: when a folder is missing or empty, a class has no image, or the learner cannot
      take that many classes (a gradient-based learner's head is fixed).

  Example:
    With ``support/cat/1.png``, ``support/dog/1.png`` and a folder ``query/`` of images:

    >>> classes, predictions = classify_folders("runs/protonet_omniglot_5w1s", "support",
    ...                                         "query")  # doctest: +SKIP

  References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (classifying new
    classes from a few labelled support examples, the task the run was meta-trained for).
  """
  support, query = Path(support), Path(query)
  for name, folder in (("support", support), ("query", query)):
    if not folder.is_dir():
      raise ValueError(f"the {name} folder {folder} does not exist or is not a folder")
  classes = sorted(p.name for p in support.iterdir() if p.is_dir() and not p.name.startswith("."))
  if len(classes) < 2:
    raise ValueError(f"the support folder {support} has {len(classes)} class sub-folder(s); "
                     "put each class's images in a sub-folder named after it, at least 2")
  support_paths, support_labels = [], []
  for label, name in enumerate(classes):
    files = image_files(support / name)
    if not files:
      raise ValueError(f"the support class folder {support / name} holds no image "
                       f"({', '.join(IMAGE_SUFFIXES)}); add at least one or remove the folder")
    support_paths += files
    support_labels += [label] * len(files)
  query_paths = image_files(query)
  if not query_paths:
    raise ValueError(f"the query folder {query} holds no image ({', '.join(IMAGE_SUFFIXES)})")
  learner, params, config = load_run(run_dir, checkpoint, ways=_ways_for(run_dir, len(classes)))
  support_x, query_x = read_images(support_paths, config), read_images(query_paths, config)
  support_y = np.asarray(support_labels, np.int32)
  query_y = np.zeros(len(query_paths), np.int32)
  learner.check_task(Task(support_x, support_y, query_x, query_y))
  steps = config.test_inner_steps if steps is None else steps

  @jax.jit
  def scores_of(params, support_x, support_y, query_x, key):
    return learner.predict_task(params, support_x, support_y, query_x, key, steps=steps)

  scores = np.asarray(scores_of(params, jnp.asarray(support_x), jnp.asarray(support_y),
                                jnp.asarray(query_x), jax.random.key(seed)))
  predictions = []
  for path, row in zip(query_paths, scores):
    parent = path.parent.name if path.parent != query else None
    label = parent if parent in classes else None
    predictions.append(Prediction(path, classes[int(np.argmax(row))], label, row))
  return classes, predictions


def _ways_for(run_dir: str | os.PathLike, classes: int) -> int | None:
  """The ``ways`` to build the learner with: ``classes``, checked against a fixed head."""
  config = read_run_config(run_dir)
  if registry.ALGORITHMS[config.algorithm].gradient_based:
    if classes != config.ways:
      raise ValueError(
          f"the support folder has {classes} classes but the run's {config.algorithm} learner "
          f"has a {config.ways}-way head; give it exactly {config.ways} class sub-folders (a "
          "metric learner such as protonet takes any number)")
    return None
  return classes
