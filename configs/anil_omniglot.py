"""ANIL (head-only inner loop) on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Raghu, Raghu, Bengio & Vinyals (ICLR 2020) train ANIL with MAML's hyperparameters; so do we (see
``maml_omniglot.py``): Conv-4 strided 64 filters, alpha 0.4 / 0.1, 1 / 5 inner steps, meta-batch
32 / 16 (5-way / 20-way), Adam 1e-3, 60k steps.

Command:   metajax train configs/anil_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU (no GPU); measured with budgets of 6-13 minutes only (below); 5w1s:

             metajax train configs/anil_omniglot.py:5w1s time_budget_minutes=6 \
               eval_every=250 eval_episodes=100 run_dir=runs/anil_omniglot_5w1s_6min

           2,151 meta-steps in 6 min.
Accuracy:  5w1s after those 6 minutes: best validation 94.6 %; test 94.01 +- 0.45 % (600
           episodes of the Vinyals test split, 15 queries per class). The paper reports
           ANIL on par with MAML (Omniglot 20-way and miniImageNet), not 5w1s.
           5w5s with a 10-minute budget (2026-11-23, pinned to one core with
           ``taskset -c 1`` while a MAML run used the other):

             metajax train configs/anil_omniglot.py:5w5s time_budget_minutes=10 \
               eval_every=250 eval_episodes=100 adaptation_episodes=100 \
               run_dir=runs/anil_omniglot_5w5s_10min

           459 meta-steps; best validation 95.0 %; test 93.43 +- 0.70 % (600 episodes).
           (The paper gives no Omniglot 5w5s number.)
           20w1s with a 10-minute budget (2026-11-24, ``taskset -c 1`` while a MAML run used
           the other core), the model then tested at 20w5s:

             metajax train configs/anil_omniglot.py:20w1s time_budget_minutes=10 \
               eval_every=40 eval_episodes=50 adaptation_episodes=50 \
               run_dir=runs/anil_omniglot_20w1s_10min
             metajax evaluate runs/anil_omniglot_20w1s_10min --shots 5

           510 meta-steps (~0.8/s); best validation 81.7 %; test 81.35 +- 0.41 % (20w1s) and
           92.40 +- 0.20 % (20w5s, same model), 600 episodes each.
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
