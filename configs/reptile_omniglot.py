"""Reptile on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Nichol, Achiam & Schulman ("On First-Order Meta-Learning Algorithms", 2018, Appendix A, Table 3,
Omniglot column): inner Adam (beta1=0) 1e-3, 5 inner iterations, 10 training shots per class,
meta-batch 5, outer step size 1.0 annealed linearly to 0 over 100k outer iterations, 50 inner
iterations at test. Differences: our inner loop takes full-batch steps on the support set (the
paper uses inner minibatches of 10), and validation/test episodes use ``shots`` of the setting.

Command:   metajax train configs/reptile_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU (no GPU); measured with budgets of 6-13 minutes only (below); 5w1s:

             metajax train configs/reptile_omniglot.py:5w1s time_budget_minutes=6 \
               eval_every=250 eval_episodes=100 run_dir=runs/reptile_omniglot_5w1s_6min

           509 meta-steps in 6.4 min (outer steps; the schedule is 100,000).
Accuracy:  5w1s after those 6 minutes: best validation 45.9 %; test 46.16 +- 0.81 % (600
           episodes of the Vinyals test split, 15 queries per class). Far from the
           paper's 97.68 / 99.48 / 89.43 / 97.12 % (transductive): Reptile's small meta-batch
           and annealed outer step learn slowly in a short budget.
           5w5s with a 10-minute budget (2026-11-23, pinned to one core with ``taskset -c 1``
           while a MAML run used the other; the budget is checked after each step, and the
           50-inner-step validations at steps 250, 500 and 501 took the run to 13.1 min):

             metajax train configs/reptile_omniglot.py:5w5s time_budget_minutes=10 \
               eval_every=250 eval_episodes=100 adaptation_episodes=100 \
               run_dir=runs/reptile_omniglot_5w5s_10min

           501 outer steps in 13.1 min; best validation 70.5 %; test 70.35 +- 0.69 % (600
           episodes, 50 inner steps).
           20w1s with a 10-minute budget (2026-11-24, ``taskset -c 1`` while a MAML run used
           the other core; validated only when it stopped), the model then tested at 20w5s:

             metajax train configs/reptile_omniglot.py:20w1s time_budget_minutes=10 \
               eval_every=250 eval_episodes=50 adaptation_episodes=50 \
               run_dir=runs/reptile_omniglot_20w1s_10min
             metajax evaluate runs/reptile_omniglot_20w1s_10min --shots 5

           148 outer steps in 11.3 min (~4.6 s each); test 23.29 +- 0.32 % (20w1s) and
           50.82 +- 0.36 % (20w5s, same model; that test took 41 min on one core: 50 inner
           steps per episode), 600 episodes each. The paper: 89.43 / 97.12 % (transductive).
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"reptile_omniglot_{arg}", algorithm="reptile",
      algorithm_kwargs=dict(inner_lr=1e-3, steps=5, eval_steps=50),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride"),
      dataset="omniglot", ways=ways, shots=10, queries=1, test_shots=shots, test_queries=15,
      meta_batch=5, optimizer="reptile", learning_rate=1.0,
      optimizer_kwargs=dict(anneal_steps=100_000),
      meta_steps=100_000, eval_every=2_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/reptile_omniglot_{arg}")
