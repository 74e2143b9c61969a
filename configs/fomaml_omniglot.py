"""First-order MAML on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

MAML's Omniglot settings (see ``maml_omniglot.py``) without second-order terms, as Finn, Abbeel &
Levine (ICML 2017, Sec. 5.2) evaluate the first-order approximation.

Command:   metajax train configs/fomaml_omniglot.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured.
"""

import dataclasses
from pathlib import Path

from metajax.train.config import Config, load_config

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``: MAML's config, fomaml algorithm."""
  arg = arg or "5w1s"
  maml = load_config(f"{Path(__file__).with_name('maml_omniglot.py')}:{arg}")
  return dataclasses.replace(maml, name=f"fomaml_omniglot_{arg}", algorithm="fomaml",
                             run_dir=f"runs/fomaml_omniglot_{arg}")
