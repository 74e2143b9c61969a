"""The metajax command line: help texts and error paths."""

import subprocess
import sys

import pytest

from metajax.cli import main

SUBCOMMANDS = ("sinusoid", "train", "evaluate", "predict", "bench", "data")


def test_top_level_help_lists_every_subcommand(capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(["--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  for name in SUBCOMMANDS:
    assert name in text


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name, capsys):
  with pytest.raises(SystemExit) as exit_info:
    main([name, "--help"])
  assert exit_info.value.code == 0
  assert "usage: metajax " + name in capsys.readouterr().out


def test_entry_point_help():
  done = subprocess.run([sys.executable, "-m", "metajax.cli", "--help"], capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0 and "train" in done.stdout


def test_train_with_a_bad_config_names_the_key(tmp_path, capsys):
  config = tmp_path / "bad.py"
  config.write_text("from metajax.train import Config\n"
                    "def get_config():\n  return Config(algorithm='mamll')\n")
  assert main(["train", str(config), f"run_dir={tmp_path / 'run'}"]) == 2
  assert "'algorithm'" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()
  assert main(["train", str(config), "algorithm=maml", "meta_steps=-1"]) == 2
  assert "'meta_steps'" in capsys.readouterr().err


def test_evaluate_a_missing_run(tmp_path, capsys):
  assert main(["evaluate", str(tmp_path / "nothing")]) == 1
  assert "config.json" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["l2=0.1", "[0.1]"])
def test_evaluator_kwargs_must_be_a_json_object(text, tmp_path, capsys):
  assert main(["evaluate", str(tmp_path), "--evaluator", "linear_probe",
               "--evaluator-kwargs", text]) == 1
  err = capsys.readouterr().err
  assert "--evaluator-kwargs must be a JSON object" in err and text in err
