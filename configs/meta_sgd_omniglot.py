"""Meta-SGD (learned per-parameter inner rates) on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Li, Zhou, Chen & Li (2017, Sec. 4.2) follow MAML's Omniglot protocol with one adaptation step;
we use MAML's network, meta-batches and Adam 1e-3 (see ``maml_omniglot.py``), with the learned
rates initialised at MAML's alpha (the paper initialises them randomly in [0.005, 0.1]).

Command:   metajax train configs/meta_sgd_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU (no GPU); measured with budgets of 6-13 minutes only (below); 5w1s:

             metajax train configs/meta_sgd_omniglot.py:5w1s time_budget_minutes=6 \
               eval_every=250 eval_episodes=100 run_dir=runs/meta_sgd_omniglot_5w1s_6min

           981 meta-steps in 6 min.
Accuracy:  5w1s after those 6 minutes: best validation 90.8 %; test 89.39 +- 0.61 % (600
           episodes of the Vinyals test split, 15 queries per class). The paper reports
           99.53 +- 0.26 % after its full schedule.
           5w5s with a 10-minute budget (2026-11-23, pinned to one core with
           ``taskset -c 1`` while a MAML run used the other):

             metajax train configs/meta_sgd_omniglot.py:5w5s time_budget_minutes=10 \
               eval_every=250 eval_episodes=100 adaptation_episodes=100 \
               run_dir=runs/meta_sgd_omniglot_5w5s_10min

           261 meta-steps; best validation 93.6 %; test 91.58 +- 0.44 % (600 episodes).
           The paper reports 99.93 +- 0.09 % for 5w5s.
           20w1s with a 10-minute budget (2026-11-24, ``taskset -c 1`` while a MAML run used
           the other core), the model then tested at 20w5s:

             metajax train configs/meta_sgd_omniglot.py:20w1s time_budget_minutes=10 \
               eval_every=40 eval_episodes=50 adaptation_episodes=50 \
               run_dir=runs/meta_sgd_omniglot_20w1s_10min
             metajax evaluate runs/meta_sgd_omniglot_20w1s_10min --shots 5

           557 meta-steps (~0.9/s); best validation 72.8 %; test 71.89 +- 0.44 % (20w1s) and
           85.58 +- 0.30 % (20w5s, same model), 600 episodes each. The paper reports
           95.93 +- 0.38 / 98.97 +- 0.19 % for 20w1s / 20w5s.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  five = ways == 5
  return Config(
      name=f"meta_sgd_omniglot_{arg}", algorithm="meta_sgd",
      algorithm_kwargs=dict(inner_lr=0.4 if five else 0.1, steps=1),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride"),
      dataset="omniglot", ways=ways, shots=shots, queries=shots, test_queries=15,
      meta_batch=32 if five else 16, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=5, run_dir=f"runs/meta_sgd_omniglot_{arg}")
