"""The sinusoid task family and a short MAML run that must learn."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import metajax
from metajax.train.sinusoid import adaptation_table, format_table, train_sinusoid


def test_sinusoid_tasks_follow_the_paper_distribution():
  key = jax.random.key(0)
  tasks = metajax.data.sinusoid_tasks(key, batch_size=2000, shots=10, queries=20)
  assert tasks.support_x.shape == (2000, 10, 1) and tasks.query_y.shape == (2000, 20, 1)
  assert float(tasks.support_x.min()) >= -5.0 and float(tasks.support_x.max()) <= 5.0
  params = metajax.data.sinusoid_params(jax.random.split(key, 3)[0], 2000)
  assert float(params.amplitude.min()) >= 0.1 and float(params.amplitude.max()) <= 5.0
  assert float(params.phase.min()) >= 0.0 and float(params.phase.max()) <= np.pi
  np.testing.assert_allclose(tasks.support_y, metajax.data.sinusoid(params, tasks.support_x),
                             rtol=1e-6, atol=1e-6)
  again = metajax.data.sinusoid_tasks(key, batch_size=2000, shots=10, queries=20)
  np.testing.assert_array_equal(tasks.support_x, again.support_x)


def test_short_maml_run_learns_to_adapt():
  run = train_sinusoid(meta_steps=3000, shots=10, steps_per_call=1000, seed=0)
  assert run.losses.shape == (3000,)
  table = adaptation_table(run, shots=(10,), steps=(0, 1, 5), num_tasks=200)
  before, one, five = (table[10][n][0] for n in (0, 1, 5))
  # The unadapted initialisation predicts roughly the mean curve (MSE ~3); adaptation must help.
  assert one < 0.6 * before and five < one, format_table(table)


def test_experiment_trains_one_model_per_k_and_writes_its_table(tmp_path):
  from metajax.train.config import load_config
  from metajax.train.sinusoid import run_sinusoid_experiment

  config_file = Path(__file__).resolve().parents[1] / "configs" / "sinusoid_maml.py"
  config = load_config(config_file, ["meta_steps=300", "shots=(3,7)", "test_tasks=50",
                                     f"run_dir={tmp_path / 'run'}"])
  messages = []
  table = run_sinusoid_experiment(config, report=messages.append)
  assert sorted(table) == [3, 7]
  assert sum("meta-trained with K=" in m for m in messages) == 2
  for k in (3, 7):
    # Each row comes from the model meta-trained with that K: training it again on K alone
    # (same seed) gives the same errors.
    alone = run_sinusoid_experiment(config.replace(shots=(k,)), report=messages.append,
                                    write=False)
    assert alone[k] == table[k]
  written = json.loads((tmp_path / "run" / "sinusoid_table.json").read_text())
  assert written["7"]["1"] == list(table[7][1])
  assert json.loads((tmp_path / "run" / "config.json").read_text())["shots"] == [3, 7]


def test_sinusoid_config_checks_shots():
  from metajax.train.config import SinusoidConfig, apply_overrides, validate

  assert apply_overrides(SinusoidConfig(), ["shots=10"]).shots == (10,)
  assert apply_overrides(SinusoidConfig(), ["shots=5,10"]).shots == (5, 10)
  with pytest.raises(ValueError, match="'shots'"):
    validate(SinusoidConfig(shots=(5, 0)))
  with pytest.raises(ValueError, match="'shots'"):
    apply_overrides(SinusoidConfig(), ["shots=five"])
