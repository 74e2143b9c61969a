"""Bad input is caught before it costs anything; caches are keyed by content (issue 26)."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tiny import WAYS, classification_tasks, tanh_classifier
from PIL import Image

import metajax
from metajax.core.meta_step import NonFiniteStepError
from metajax.data import ClassDataset, episode_sampler
from metajax.train import Config, train, validate
from metajax.train.trainer import evaluate_episodes


def _host(tree):
  return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _fresh(check_finite, learning_rate=1e-2):
  learner = metajax.maml(tanh_classifier(), inner_lr=0.5)
  optimizer = optax.adam(learning_rate)
  step = metajax.make_meta_step(learner, optimizer, batching="map", check_finite=check_finite)
  return step, metajax.init_meta_state(learner, optimizer)


# 1. A non-finite input or update never replaces a good state -------------------------------


def test_nan_host_input_is_refused_before_the_step():
  step, state = _fresh(True)
  before = _host(state)
  tasks = classification_tasks()
  support_x = tasks.support_x.copy()
  support_x[2, 1, 3] = np.nan
  with pytest.raises(ValueError, match=r"support_x must be finite.*index \(2, 1, 3\) \(task 2\)"):
    step(state, tasks._replace(support_x=support_x), jax.random.key(0))
  # Nothing ran, so nothing was donated: the caller's state is intact.
  jax.tree.map(np.testing.assert_array_equal, _host(state), before)


@pytest.mark.parametrize("field", ["support_x", "query_x"])
def test_nan_device_input_raises_after_the_step_with_the_old_state(field):
  step, state = _fresh("raise")
  before = _host(state)
  tasks = jax.tree.map(jnp.asarray, classification_tasks())
  tasks = tasks._replace(**{field: getattr(tasks, field).at[0, 0, 0].set(jnp.inf)})
  with pytest.raises(NonFiniteStepError, match="task batch holds NaN or infinite") as error:
    step(state, tasks, jax.random.key(0))
  # The input state was donated; error.state carries its values, bit for bit.
  jax.tree.map(np.testing.assert_array_equal, _host(error.value.state), before)
  assert not bool(error.value.metrics["finite_inputs"])


def test_nonfinite_update_raises_with_the_old_state():
  step, state = _fresh(True, learning_rate=1e38)
  good = classification_tasks()
  state, _ = step(state, good, jax.random.key(0))  # Adam's first step is ~lr: 1e38, finite
  before = _host(state)
  with pytest.raises(NonFiniteStepError, match="update was not finite") as error:
    step(state, good, jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, _host(error.value.state), before)
  assert int(error.value.state.step) == 1


def test_skip_mode_keeps_the_state_and_carries_on_exactly():
  """A skipped batch leaves the state as if it had never been seen (checked bit for bit
  against a run that never saw it)."""
  tasks = classification_tasks()
  bad = tasks._replace(query_x=np.where(np.arange(tasks.query_x.size).reshape(
      tasks.query_x.shape) == 5, np.nan, tasks.query_x).astype(np.float32))
  step, state = _fresh("skip")
  state, metrics = step(state, bad, jax.random.key(0))
  assert not bool(metrics["finite_inputs"]) and bool(metrics["finite_update"]) is False
  state, metrics = step(state, tasks, jax.random.key(1))
  assert bool(metrics["finite_inputs"]) and bool(metrics["finite_update"])
  reference_step, reference = _fresh(False)
  reference, _ = reference_step(reference, tasks, jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, _host(state), _host(reference))


def test_check_finite_off_adds_nothing_and_bad_values_are_refused():
  step, state = _fresh(False)
  _, metrics = step(state, classification_tasks(), jax.random.key(0))
  assert "finite_inputs" not in metrics
  with pytest.raises(ValueError, match="check_finite must be one of"):
    metajax.make_meta_step(metajax.maml(tanh_classifier()), optax.sgd(0.1), check_finite="yes")


# 2. evaluate_tasks checks its tasks -------------------------------------------------------------


@pytest.mark.parametrize("learner_fn", [
    lambda: metajax.maml(tanh_classifier()),
    lambda: metajax.protonet(metajax.from_function(lambda p, x: x * p["s"], {"s": jnp.ones(())}),
                             ways=WAYS)])
def test_evaluate_tasks_refuses_labels_outside_ways(learner_fn):
  learner = learner_fn()
  tasks = classification_tasks()
  query_y = tasks.query_y.copy()
  query_y[1, 0] = WAYS
  with pytest.raises(ValueError, match=r"query_y must lie in \[0, "):
    metajax.evaluate_tasks(learner, learner.init(), tasks._replace(query_y=query_y),
                           jax.random.key(0))
  with pytest.raises(TypeError, match="metajax.Task"):
    metajax.evaluate_tasks(learner, learner.init(), tuple(tasks), jax.random.key(0))


def test_evaluate_tasks_takes_one_key_per_task():
  learner = metajax.maml(tanh_classifier())
  tasks = classification_tasks()
  keys = jax.random.split(jax.random.key(3), 4)
  by_keys = metajax.evaluate_tasks(learner, learner.init(), tasks, keys)
  by_key = metajax.evaluate_tasks(learner, learner.init(), tasks, jax.random.key(3))
  np.testing.assert_array_equal(by_keys["loss"], by_key["loss"])
  with pytest.raises(ValueError, match="3 keys for 4 tasks"):
    metajax.evaluate_tasks(learner, learner.init(), tasks, keys[:3])


def test_evaluate_tasks_reuses_its_compiled_function_and_frees_it_with_the_learner():
  """The compiled evaluation lives exactly as long as ``learner.evaluate``: reused while it
  lives, freed with it. An ``lru_cache`` keyed on learners once kept 64 learners and their
  executables alive, and a process training many learners reached Linux's memory-map limit
  (XLA segfaulted loading an executable at ~65,000 maps)."""
  import gc
  import weakref

  from metajax.core import meta_step

  learner = metajax.maml(tanh_classifier())
  tasks = classification_tasks()
  first = metajax.evaluate_tasks(learner, learner.init(), tasks, jax.random.key(3))
  fn = meta_step._eval_fn(learner, None, "map")
  assert meta_step._eval_fn(learner, None, "map") is fn
  assert meta_step._eval_fn(learner, 2, "map") is not fn  # other steps: another function
  again = metajax.evaluate_tasks(learner, learner.init(), tasks, jax.random.key(3))
  np.testing.assert_array_equal(first["loss"], again["loss"])
  evaluate, compiled = weakref.ref(learner.evaluate), weakref.ref(fn)
  del learner, fn
  gc.collect()
  assert evaluate() is None and compiled() is None


# 3. A 1-way episode is not a classification task ------------------------------------------------


def test_one_way_is_refused_everywhere():
  config = Config(algorithm="protonet", model_kwargs=dict(filters=4), ways=1, run_dir="x")
  with pytest.raises(ValueError, match="'ways' must be at least 2"):
    validate(config)
  with pytest.raises(ValueError, match="'test_ways' must be at least 2"):
    validate(config.replace(ways=5, test_ways=1))
  one_output = metajax.from_function(lambda p, x: x @ p["w"], {"w": jnp.ones((4, 1))})
  tasks = classification_tasks()
  tasks = tasks._replace(support_y=np.zeros_like(tasks.support_y),
                         query_y=np.zeros_like(tasks.query_y))
  with pytest.raises(ValueError, match="at least 2 outputs"):
    metajax.maml(one_output).check_task(tasks)
  embed = metajax.from_function(lambda p, x: x * p["s"], {"s": jnp.ones(())})
  with pytest.raises(ValueError, match="ways must be at least 2"):
    metajax.protonet(embed, ways=1)
  with pytest.raises(ValueError, match="1 class in its support set"):
    metajax.protonet(embed).check_task(tasks)
  dataset = ClassDataset(np.zeros((4, 5, 2, 2, 1), np.uint8), tuple("abcd"), None, "toy")
  with pytest.raises(ValueError, match="ways=1 must be at least 2"):
    episode_sampler(dataset, ways=1, shots=1, queries=1, batch_size=2)


# 4. Square-root inner optimizers without eps_root ------------------------------------------------


def _meta_gradient(optimizer):
  """The second-order meta-gradient through 2 inner steps, where ``unused`` feeds a dead ReLU
  and so has a zero gradient (computed with metajax.inner_loop and jax.grad, independently of
  maml's check)."""
  x, y = jnp.array([[1.0, 2.0], [0.5, -1.0]]), jnp.array([1.0, -0.5])

  def loss(p):
    dead = jax.nn.relu(x @ p["w"] - 100.0)  # always 0: the gradient of "unused" is exactly 0
    return jnp.mean((x @ p["w"] + dead * jnp.sum(p["unused"]) - y) ** 2)

  def outer(p):
    return loss(metajax.inner_loop(loss, p, optimizer, steps=2).params)

  return jax.grad(outer)({"w": jnp.array([0.3, -0.2]), "unused": jnp.ones(3)})


OPTIMIZERS = {
    "adam": optax.adam(0.1), "adam_eps_root": optax.adam(0.1, eps_root=1e-8),
    "adamw": optax.adamw(0.1), "nadam": optax.nadam(0.1), "rmsprop": optax.rmsprop(0.1),
    "sgd": optax.sgd(0.1), "adagrad": optax.adagrad(0.1)}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_inner_optimizers_that_give_nan_meta_gradients_are_refused(name):
  optimizer = OPTIMIZERS[name]
  finite = all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(_meta_gradient(optimizer)))
  if finite:
    metajax.maml(tanh_classifier(), inner_optimizer=optimizer)
  else:
    with pytest.raises(ValueError, match="eps_root"):
      metajax.maml(tanh_classifier(), inner_optimizer=optimizer)
  # First-order MAML never differentiates the update: always accepted.
  metajax.maml(tanh_classifier(), inner_optimizer=optimizer, first_order=True)
  assert name not in ("adam", "adamw", "nadam") or not finite  # the probe has a case to catch


# 5. Evaluation episode i depends on (key, i) only -------------------------------------------------


@pytest.fixture(scope="module")
def toy_dataset():
  rng = np.random.default_rng(0)
  return ClassDataset(rng.integers(0, 256, (40, 20, 3, 3, 1), dtype=np.uint8),
                      tuple(str(i) for i in range(40)), None, "toy")


def test_evaluation_episodes_do_not_depend_on_the_batch_size(toy_dataset):
  key = jax.random.key(7)
  streams = {}
  # Episodes 0..count-1 drawn `batch` at a time (fewer for the small batches, to stay fast).
  for batch, count in ((1, 60), (7, 140), (50, 600), (600, 600)):
    sampler = episode_sampler(toy_dataset, ways=5, shots=1, queries=2, batch_size=batch)
    parts = [sampler.sample_at(key, first) for first in range(0, count, batch)]
    streams[batch] = jax.tree.map(lambda *xs, n=count: np.concatenate(xs)[:n], *parts)
  for batch in (1, 7, 50):
    count = len(streams[batch].support_y)
    jax.tree.map(lambda a, b, n=count: np.testing.assert_array_equal(a, b[:n]), streams[batch],
                 streams[600])
  # ... and they are not all alike: the classes drawn vary.
  assert len({tuple(row) for row in streams[600].support_x[:, :, 0, 0, 0]}) > 500


def test_evaluate_episodes_gives_the_same_numbers_for_every_eval_batch(toy_dataset):
  embed = metajax.from_function(lambda p, x: x.reshape(x.shape[0], -1) * p["s"],
                                {"s": jnp.ones(())})
  learner = metajax.protonet(embed, ways=5)
  results = []
  for batch in (1, 7, 50):
    sampler = episode_sampler(toy_dataset, ways=5, shots=1, queries=2, batch_size=batch)
    results.append(evaluate_episodes(learner, learner.init(), sampler, jax.random.key(1), 50))
  for other in results[1:]:
    assert other["accuracy"] == results[0]["accuracy"]
    np.testing.assert_allclose(other["loss"], results[0]["loss"], rtol=1e-6)


# 6-7. Caches keyed by the content they came from --------------------------------------------------


def _png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def _mini_imagenet_copy(root: Path, seed: int) -> None:
  folder = root / "miniimagenet"
  (folder / "splits" / "ravi").mkdir(parents=True)
  (folder / "images").mkdir()
  rng = np.random.default_rng(seed)
  rows = [(f"n0{c}_{i}.png", f"n0{c}") for c in range(2) for i in range(3)]
  for name, _ in rows:
    (folder / "images" / name).write_bytes(_png(rng.integers(0, 256, (4, 4, 3), np.uint8)))
  (folder / "splits" / "ravi" / "test.csv").write_text(
      "filename,label\n" + "".join(f"{f},{label}\n" for f, label in rows))


def test_mini_imagenet_cache_follows_the_images_not_the_rows(tmp_path, caplog):
  from metajax.data import load_mini_imagenet

  a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
  _mini_imagenet_copy(a, 0)
  _mini_imagenet_copy(b, 1)  # same CSV rows, other pixels
  options = dict(image_size=4, cache_dir=cache, workers=1)
  first = load_mini_imagenet("test", data_dir=a, **options)
  with caplog.at_level(logging.INFO, logger="metajax.data"):
    second = load_mini_imagenet("test", data_dir=b, **options)
  direct = np.asarray(Image.open(b / "miniimagenet" / "images" / "n00_0.png"))
  np.testing.assert_array_equal(second.images[0, 0], direct)
  assert not np.array_equal(first.images, second.images)
  assert "rebuilding the cache" in caplog.text
  again = load_mini_imagenet("test", data_dir=b, **options)  # now a cache hit
  np.testing.assert_array_equal(again.images, second.images)


def _tiny_imagenet_copy(root: Path, seed: int) -> None:
  base = root / "tiny-imagenet" / "tiny-imagenet-200"
  wnids = [f"n{i:08d}" for i in range(200)]
  base.mkdir(parents=True)
  (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
  rng = np.random.default_rng(seed)
  for wnid in wnids:
    images = base / "train" / wnid / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), rng.integers(0, 256), np.uint8)).save(
        images / f"{wnid}_0.JPEG", quality=95)


def test_tiny_imagenet_cache_follows_the_folder_content(tmp_path):
  from metajax.data import tiny_imagenet_classes

  a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
  _tiny_imagenet_copy(a, 0)
  _tiny_imagenet_copy(b, 1)
  first = tiny_imagenet_classes(data_dir=a, cache_dir=cache, workers=1)
  second = tiny_imagenet_classes(data_dir=b, cache_dir=cache, workers=1)
  assert not np.array_equal(first.images, second.images)
  pixel = np.asarray(Image.open(b / "tiny-imagenet/tiny-imagenet-200/train/n00000000/images/"
                                    "n00000000_0.JPEG"))
  np.testing.assert_array_equal(second.images[0, 0], pixel)


def _cifar_copy(root: Path, seed: int) -> None:
  from metajax.data.cifar_fs import CIFAR_FS_SPLITS

  folder = root / "cifar100" / "cifar-100-python"
  folder.mkdir(parents=True)
  names = sorted(n for split in CIFAR_FS_SPLITS.values() for n in split)
  rng = np.random.default_rng(seed)
  for part in ("train", "test"):
    data = rng.integers(0, 256, (100, 3072), np.uint8)
    (folder / part).write_bytes(pickle.dumps({b"data": data, b"fine_labels": list(range(100))}))
  (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [n.encode() for n in names]}))


def test_cifar_fs_cache_follows_the_folder_content(tmp_path):
  from metajax.data import load_cifar_fs

  a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
  _cifar_copy(a, 0)
  _cifar_copy(b, 1)
  first = load_cifar_fs("test", data_dir=a, cache_dir=cache)
  second = load_cifar_fs("test", data_dir=b, cache_dir=cache)
  assert not np.array_equal(first.images, second.images)
  third = load_cifar_fs("test", data_dir=b, cache_dir=tmp_path / "other")
  np.testing.assert_array_equal(second.images, third.images)


def test_data_check_rehashes_a_damaged_archive_of_the_same_size(omniglot_root, tmp_path,
                                                               monkeypatch, capsys):
  """Omniglot damaged in place (same name, size and even mtime) while the cache is warm."""
  from metajax.cli import main
  from metajax.data import _paths, omniglot_characters

  data, cache = tmp_path / "data", tmp_path / "cache"
  shutil.copytree(omniglot_root, data / "omniglot")
  real_cache = _paths.cache_dir() / "omniglot"
  for stem in ("images_background", "images_evaluation"):  # warm: copy the session's cache
    omniglot_characters(stem)  # makes sure it exists for this archive's content
    (cache / "omniglot").mkdir(parents=True, exist_ok=True)
    shutil.copy(real_cache / f"{stem}_28.npz", cache / "omniglot")
  monkeypatch.setenv("METAJAX_CACHE_DIR", str(cache))
  # miniImageNet's split files without its images: reported as not usable, not a failure.
  (data / "miniimagenet" / "splits" / "ravi").mkdir(parents=True)
  (data / "miniimagenet" / "splits" / "ravi" / "train.csv").write_text("filename,label\n")
  capsys.readouterr()
  assert main(["data", "check", "--data-dir", str(data), "--workers", "1"]) == 0
  out = capsys.readouterr().out
  assert "miniimagenet/train: not usable: miniImageNet train not found" in out
  assert "cifar100: not found" in out and "PROBLEM" not in out
  archive = data / "omniglot" / "images_evaluation.zip"
  stat = archive.stat()
  blob = bytearray(archive.read_bytes())
  blob[200:260] = bytes(60)  # inside the first members' compressed data
  archive.chmod(0o644)
  archive.write_bytes(bytes(blob))
  os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the same mtime
  assert archive.stat().st_size == stat.st_size
  capsys.readouterr()
  assert main(["data", "check", "--data-dir", str(data), "--workers", "1"]) == 1
  out = capsys.readouterr()
  assert "PROBLEM" in out.out and "images_evaluation" in out.out
  assert "rebuilding the cache" in out.err


def test_digest_memo_is_not_trusted_inside_fresh_digests(tmp_path):
  from metajax.data import _digest, fresh_digests

  path = tmp_path / "f.bin"
  path.write_bytes(b"a" * 100)
  first = _digest.source_digest(path, tmp_path)
  stat = path.stat()
  path.write_bytes(b"b" * 100)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  with fresh_digests():
    assert _digest.source_digest(path, tmp_path) != first


# 10. Config and CLI errors: one line naming the rule, the value and the fix -----------------------


TINY = Config(algorithm="maml", algorithm_kwargs=dict(inner_lr=0.4, steps=1), model="conv4",
              model_kwargs=dict(filters=4), dataset="omniglot", ways=3, shots=1, queries=1,
              meta_batch=2, meta_steps=2, run_dir="never")


@pytest.mark.parametrize("change, message", [
    (dict(model_kwargs=dict(filters=0)), r"model_kwargs.*filters must be positive integers"),
    (dict(model_kwargs=dict(filters=(4, 4, -1, 4))), r"model_kwargs.*positive integers"),
    (dict(model="resnet12", model_kwargs=dict(widths=(4, 4, 0, 4))), r"widths must be positive"),
    (dict(algorithm_kwargs=dict(inner_lr="abc")), r"'algorithm_kwargs.inner_lr' must be a number"),
    (dict(model_kwargs=dict(flatten="no")), r"'model_kwargs.flatten' must be True or False"),
    (dict(optimizer_kwargs=dict(decay_every=0)), r"'optimizer_kwargs.decay_every' must be a pos"),
    (dict(optimizer_kwargs=dict(decay_every=0, decay_factor=0.5)), r"decay_every' must be a pos"),
    (dict(optimizer_kwargs=dict(decay_every=10, decay_factor="x")), r"decay_factor' must be a n"),
    (dict(checkpoint_every_minutes=0), r"'checkpoint_every_minutes' must be > 0"),
])
def test_bad_kwargs_are_caught_by_validate(change, message):
  with pytest.raises(ValueError, match=message):
    validate(TINY.replace(**change))


def test_algorithm_factory_errors_name_the_config_key():
  from metajax.train import registry

  with pytest.raises(ValueError, match=r"'algorithm_kwargs'.*inner_lr must be > 0"):
    registry.build_learner(TINY.replace(algorithm_kwargs=dict(inner_lr=-1.0)), jax.random.key(0))


def test_algorithm_factory_errors_come_before_the_run_folder(tmp_path):
  run_dir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"'algorithm_kwargs'.*inner_lr must be > 0"):
    train(TINY.replace(algorithm_kwargs=dict(inner_lr=-1.0), run_dir=str(run_dir)))
  assert not run_dir.exists()


def _config_file(tmp_path: Path, body: str) -> Path:
  path = tmp_path / "cfg.py"
  path.write_text("from metajax.train import Config\n" + body)
  return path


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
  from metajax.cli import main

  fields = {f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)}
  config = _config_file(tmp_path, f"def get_config():\n  return Config(**{fields!r})\n")
  cases = [
      (["train", str(config), "model_kwargs.filters=0"], "filters must be positive integers"),
      (["train", str(config), "algorithm_kwargs.inner_lr=abc"], "inner_lr' must be a number"),
      (["train", str(config), "optimizer_kwargs.decay_every=0"], "decay_every' must be a pos"),
      (["evaluate", str(tmp_path), "--checkpoint", "abc"], "'best', 'last' or a step number"),
      (["evaluate", str(tmp_path), "--episodes", "0"], "episodes must be an integer >= 1"),
      (["evaluate", str(tmp_path), "--ways", "1"], "ways must be an integer >= 2"),
  ]
  for argv, message in cases:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and message in err, (argv, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "never").exists()


def test_cli_debug_shows_the_traceback(tmp_path, capsys):
  from metajax.cli import main

  assert main(["evaluate", str(tmp_path), "--checkpoint", "abc", "--debug"]) != 0
  err = capsys.readouterr().err
  assert "Traceback" in err and "'best', 'last' or a step number" in err
  assert main(["evaluate", str(tmp_path), "--checkpoint", "abc"]) != 0
  assert "Traceback" not in capsys.readouterr().err


def test_cli_accepts_overrides_after_flags(tmp_path, capsys):
  from metajax.cli import main

  fields = {f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY)}
  config = _config_file(tmp_path, f"def get_config():\n  return Config(**{fields!r})\n")
  # The override after --no-progress is read (and checked): meta_steps=-3 is refused by name.
  assert main(["train", str(config), "--no-progress", "meta_steps=-3"]) == 2
  assert "'meta_steps'" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    main(["train", str(config), "--no-progress", "--bogus"])


def test_config_with_several_settings_needs_one(tmp_path, capsys):
  from metajax.cli import main
  from metajax.train import load_config

  body = ("SETTINGS = ('5w1s', '5w5s')\n"
          "def get_config(arg='5w1s'):\n  return Config(run_dir=f'runs/x_{arg}')\n")
  config = _config_file(tmp_path, body)
  with pytest.raises(ValueError, match=r"2 settings \['5w1s', '5w5s'\] but none was chosen"):
    load_config(config)
  assert load_config(f"{config}:5w5s").run_dir == "runs/x_5w5s"
  assert main(["train", str(config)]) == 2
  assert "cfg.py:5w1s" in capsys.readouterr().err
  shipped = Path(__file__).resolve().parents[1] / "configs" / "protonet_omniglot.py"
  with pytest.raises(ValueError, match="none was chosen"):
    load_config(shipped)
