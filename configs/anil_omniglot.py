"""ANIL (head-only inner loop) on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Raghu, Raghu, Bengio & Vinyals (ICLR 2020) train ANIL with MAML's hyperparameters; so do we (see
``maml_omniglot.py``): Conv-4 strided 64 filters, alpha 0.4 / 0.1, 1 / 5 inner steps, meta-batch
32 / 16 (5-way / 20-way), Adam 1e-3, 60k steps.

Command:   metajax train configs/anil_omniglot.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured.
"""

import dataclasses
from pathlib import Path

from metajax.train.config import Config, load_config

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``: MAML's config, anil algorithm."""
  arg = arg or "5w1s"
  maml = load_config(f"{Path(__file__).with_name('maml_omniglot.py')}:{arg}")
  return dataclasses.replace(maml, name=f"anil_omniglot_{arg}", algorithm="anil",
                             run_dir=f"runs/anil_omniglot_{arg}")
