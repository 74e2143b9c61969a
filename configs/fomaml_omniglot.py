"""First-order MAML on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

MAML's Omniglot settings (see ``maml_omniglot.py``) without second-order terms, as Finn, Abbeel &
Levine (ICML 2017, Sec. 5.2) evaluate the first-order approximation.

Command:   metajax train configs/fomaml_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU (no GPU); measured with budgets of 6-13 minutes only (below); 5w1s:

             metajax train configs/fomaml_omniglot.py:5w1s time_budget_minutes=6 \
               eval_every=250 eval_episodes=100 run_dir=runs/fomaml_omniglot_5w1s_6min

           1,780 meta-steps in 6 min.
Accuracy:  5w1s after those 6 minutes: best validation 87.1 %; test 85.81 +- 0.68 % (600
           episodes of the Vinyals test split, 15 queries per class). The MAML paper reports
           98.3 +- 0.5 % for first-order MAML 5w1s after its full schedule.
           5w5s with a 10-minute budget (2026-11-23, pinned to one core with
           ``taskset -c 1`` while a MAML run used the other):

             metajax train configs/fomaml_omniglot.py:5w5s time_budget_minutes=10 \
               eval_every=250 eval_episodes=100 adaptation_episodes=100 \
               run_dir=runs/fomaml_omniglot_5w5s_10min

           487 meta-steps; best validation 93.8 %; test 92.44 +- 0.46 % (600 episodes).
           The paper reports 99.2 +- 0.2 % for first-order MAML 5w5s.
           20w1s with a 10-minute budget (2026-11-24, ``taskset -c 1`` while a MAML run used
           the other core), the model then tested at 20w5s:

             metajax train configs/fomaml_omniglot.py:20w1s time_budget_minutes=10 \
               eval_every=40 eval_episodes=50 adaptation_episodes=50 \
               run_dir=runs/fomaml_omniglot_20w1s_10min
             metajax evaluate runs/fomaml_omniglot_20w1s_10min --shots 5

           371 meta-steps (~0.6/s); best validation 56.7 %; test 57.07 +- 0.47 % (20w1s) and
           78.64 +- 0.35 % (20w5s, same model), 600 episodes each. The paper reports
           89.4 +- 0.5 / 97.9 +- 0.1 % for first-order MAML 20w1s / 20w5s.
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
