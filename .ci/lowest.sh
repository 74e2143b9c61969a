#!/usr/bin/env bash
# The lowest versions pyproject.toml allows: a fresh virtual environment with every runtime
# dependency pinned to its lower bound (pytest and chex at their newest), then a fast subset of
# the tests. Not part of .ci/run (it downloads ~150 MB and takes ~5 minutes); run it when a lower
# bound changes or a newer API is used:  bash .ci/lowest.sh   (PYTHON=python3.11 by default: the
# lowest Python allowed; LOWEST_VENV=folder to keep the environment elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${LOWEST_VENV:-.venv-lowest}
rm -rf "$venv"
"${PYTHON:-python3.11}" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip

# name>=X in [project] dependencies becomes name==X.
python - > "$venv/lowest.txt" <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
  dependencies = tomllib.load(f)["project"]["dependencies"]
for requirement in dependencies:
  match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)>=([0-9][\w.]*)", requirement.replace(" ", ""))
  if not match:
    raise SystemExit(f"{requirement!r} has no plain lower bound (name>=X); give it one")
  print(f"{match[1]}=={match[2]}")
PY
echo "lowest allowed versions:"; cat "$venv/lowest.txt"
python -m pip install -q -c "$venv/lowest.txt" -e . pytest chex
python - <<'PY'
import importlib.metadata as metadata
import sys

names = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "pillow", "tqdm",
         "matplotlib"]
print(f"python {sys.version.split()[0]}; "
      + ", ".join(f"{name} {metadata.version(name)}" for name in names))
PY
python -m pytest -q -p no:cacheprovider -m "not slow" -x tests/test_learner.py \
  tests/test_models.py tests/test_sinusoid.py tests/test_cli.py tests/test_trainer.py \
  tests/test_first_hour.py
