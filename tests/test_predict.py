"""load_run and ``metajax predict``: a trained run classifies a user's own image folders.

The check is against ``evaluate_run`` on the same test episodes: the episodes' images are written
as PNG files in Omniglot's own format (dark ink on white), one support sub-folder per class, and
``metajax predict`` must score exactly the accuracy that ``metajax evaluate`` reports. The run
keeps the default transductive batch norm, where ``evaluate`` normalises support and query as
one batch; predict scores the query folder as one task the same way
(``MetaLearner.predict_task``).
"""

from __future__ import annotations

import json
import re

import jax
import numpy as np
import pytest
from PIL import Image

from metajax.cli import main
from metajax.train import Config, classify_folders, evaluate_run, load_run, train

pytestmark = pytest.mark.usefixtures("omniglot_root")

EPISODES = 2
PROTO = Config(
    name="tiny_proto", algorithm="protonet", model="conv4",
    model_kwargs=dict(filters=8, pooling="max"), dataset="omniglot", ways=5, shots=1, queries=2,
    meta_batch=1, meta_steps=8, eval_every=4, eval_episodes=4, eval_batch=4, test_ways=5,
    test_shots=2, test_queries=4, test_episodes=EPISODES, adaptation_steps=0, log_every=4,
    seed=5)


@pytest.fixture(scope="module")
def proto_run(tmp_path_factory):
  run_dir = tmp_path_factory.mktemp("proto")
  result = train(PROTO.replace(run_dir=str(run_dir)))
  assert result.completed
  return run_dir


def _write_episode(task, index, folder):
  """Writes episode ``index`` of ``task`` as Omniglot-style PNGs (ink dark, as the archives)."""
  for part, x, y in (("support", task.support_x, task.support_y),
                     ("query", task.query_x, task.query_y)):
    for i, (image, label) in enumerate(zip(np.asarray(x[index]), np.asarray(y[index]))):
      pixels = np.rint(image[..., 0] * 255.0).astype(np.uint8)
      path = folder / part / f"class_{label:02d}" / f"{i:03d}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(255 - pixels, mode="L").save(path)
  return folder / "support", folder / "query"


def test_predict_matches_evaluate_on_the_same_episodes(proto_run, tmp_path, capsys):
  from metajax.train.trainer import _TEST, _eval_sampler, _keys

  config = PROTO.replace(run_dir=str(proto_run))
  evaluated = evaluate_run(proto_run, episodes=EPISODES)
  # The episodes evaluate_run drew: the first EPISODES of the test key's stream (episode j
  # depends on the key and j alone, whatever the batch size).
  sampler = _eval_sampler(config, config.test_split)
  tasks = sampler.sample_at(_keys(config)[_TEST], 0)
  accuracies = []
  for e in range(EPISODES):
    support, query = _write_episode(tasks, e, tmp_path / f"episode{e}")
    classes, predictions = classify_folders(proto_run, support, query)
    assert classes == [f"class_{j:02d}" for j in range(5)] and len(predictions) == 20
    accuracies.append(np.mean([p.predicted == p.label for p in predictions]))
    assert main(["predict", str(proto_run), "--support", str(support),
                 "--query", str(query)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 20 + 2, out
    printed = float(re.search(r"accuracy ([\d.]+)%", out).group(1))
    assert printed == pytest.approx(100 * accuracies[-1], abs=0.01)
  assert np.mean(accuracies) == pytest.approx(evaluated["accuracy"], abs=1e-6)  # float32
  assert evaluated["accuracy"] > 0.3  # trained: far above chance (0.2)


def test_metric_run_says_why_it_has_no_adaptation_plot(proto_run):
  summary = json.loads((proto_run / "summary.json").read_text())
  assert not (proto_run / "adaptation.png").exists()
  assert summary["adaptation_plot"].startswith("no adaptation.png: protonet takes no test-time")


def test_load_run_restores_the_best_checkpoint(proto_run):
  learner, params, config = load_run(proto_run)
  assert config.algorithm == "protonet" and config.eval_ways == 5
  wide, same, wide_config = load_run(proto_run, ways=7)
  assert wide_config.eval_ways == 7
  jax.tree.map(np.testing.assert_array_equal, params, same)
  images = jax.numpy.zeros((7, 28, 28, 1))
  head = wide.adapt(same, images, jax.numpy.arange(7), jax.random.key(0))
  assert wide.predict(same, head, images[:3]).shape == (3, 7)
  with pytest.raises(ValueError, match="no checkpoint of step 3"):
    load_run(proto_run, 3)


def test_predict_errors_name_the_fix(proto_run, tmp_path, capsys):
  (tmp_path / "support" / "a").mkdir(parents=True)
  (tmp_path / "query").mkdir()
  assert main(["predict", str(proto_run), "--support", str(tmp_path / "support"),
               "--query", str(tmp_path / "query")]) == 1
  assert "at least 2" in capsys.readouterr().err
  assert main(["predict", str(tmp_path / "none"), "--support", str(tmp_path / "support"),
               "--query", str(tmp_path / "query"), "--checkpoint", "x"]) == 1
  assert "'best', 'last' or a step number" in capsys.readouterr().err
