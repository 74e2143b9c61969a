"""MAML on Omniglot (Vinyals split, 28x28, rotations as classes): 5w1s, 5w5s, 20w1s, 20w5s.

Hyperparameters of Finn, Abbeel & Levine (ICML 2017, Sec. 5.2 and Appendix A.1): Conv-4 with 64
filters, stride-2 convolutions instead of max-pooling, BatchNorm; 5-way: 1 inner step alpha=0.4,
meta-batch 32; 20-way: 5 inner steps alpha=0.1, meta-batch 16; 3 inner steps at test for 5-way
(the training steps for 20-way); Adam 1e-3; 60,000 meta-steps; K query examples per class in
training (as the paper's data pipeline); 15 query examples per class and 600 episodes at test.

Command:   metajax train configs/maml_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU (no GPU): ~2.5-2.7 meta-steps/s for 5w1s on both cores after a
           ~10 s compile, 1.8-2.4 on one; the paper's 60k steps took 478 minutes of training
           (eight hours, in five resumed calls, mostly on one core; below).
Accuracy:  the paper reports 98.7 / 99.9 / 95.8 / 98.9 % (5w1s / 5w5s / 20w1s / 20w5s).
           Measured, 5w1s with a 60-minute budget (2026-11-23, commit ae6aff7):

             metajax train configs/maml_omniglot.py:5w1s time_budget_minutes=60 \
               eval_every=500 eval_episodes=200 adaptation_episodes=200 \
               run_dir=runs/maml_omniglot_5w1s_60min

           8,811 meta-steps in 60.1 min; best validation 96.7 +- 0.6 % (step 8,000, 200
           episodes); test 95.72 +- 0.36 % (600 episodes of the Vinyals test split, 15
           queries per class, 3 inner steps).
           The same run resumed for 65 more minutes (a copy of its folder; resumption continues
           bit-identically, so this equals one 125-minute run):

             cp -r runs/maml_omniglot_5w1s_60min runs/maml_omniglot_5w1s_long
             metajax train configs/maml_omniglot.py:5w1s time_budget_minutes=65 \
               eval_every=500 eval_episodes=200 adaptation_episodes=200 \
               run_dir=runs/maml_omniglot_5w1s_long

           17,871 meta-steps in 125 min; best validation 97.5 +- 0.5 % (step 16,500); test
           97.01 +- 0.29 % (600 episodes). Resumed again on 2026-11-23 (same command, pinned to
           one core with ``taskset -c 0``, budgets 21 and 110 min; code from commit bb29623 on,
           whose 2-D matmul convolution changes rounding, so from step 20,301 on it is no
           longer bit-identical to one uninterrupted run of the old code): 32,271 meta-steps in
           256 min in all (1.2-2.1 steps/s on one core); best validation 97.8 +- 0.5 % (step
           29,500); test 97.29 +- 0.28 % (600 episodes). Resumed once more the same way
           (``time_budget_minutes=133``, 2026-11-23, commit 1886016): 48,261 meta-steps in 389
           min in all (1.8-2.2 steps/s on one core); best validation 97.9 +- 0.5 % (step
           45,500); test 97.31 +- 0.27 % (600 episodes). Resumed a last time the same way
           (``time_budget_minutes=125``, 2026-11-24, commit ad189cc), it completed the paper's
           schedule: **60,000 meta-steps** in 478 min in all (88.6 min this call, 2.2-2.4
           steps/s on one core); best validation 98.0 +- 0.5 % (step 58,500, 200 episodes);
           test **97.49 +- 0.27 %** (600 episodes, 3 inner steps; the paper: 98.7 +- 0.4 %);
           200 test episodes at 0 / 1 / 3 / 10 inner steps: 21.1 / 97.0 / 97.0 / 97.0 %.
           Scored as MAML's reference code does, with K = 1 query per class (its test tasks
           have the training shape, so the transductive BatchNorm normalises query batches of
           the size it was trained on, 5 images instead of 75):

             metajax evaluate runs/maml_omniglot_5w1s_long --queries 1 --episodes 3000

           98.85 +- 0.18 % (3,000 episodes; 99.07 +- 0.35 % on 600), the paper's 98.7 +- 0.4 %.
           5w5s with a 12-minute budget (2026-11-23, pinned to one core with
           ``taskset -c 1`` while a MAML run used the other):

             metajax train configs/maml_omniglot.py:5w5s time_budget_minutes=12 \
               eval_every=250 eval_episodes=100 adaptation_episodes=100 \
               run_dir=runs/maml_omniglot_5w5s_12min

           311 meta-steps; best validation 94.5 %; test 92.11 +- 0.67 % (600 episodes).
           The paper reports 99.9 +- 0.1 % for 5w5s after 60,000 steps.
           20w1s with a 10-minute budget (2026-11-24, ``taskset -c 0`` while other runs used
           the other core), the model then tested at 20w5s:

             metajax train configs/maml_omniglot.py:20w1s time_budget_minutes=10 \
               eval_every=40 eval_episodes=50 adaptation_episodes=50 \
               run_dir=runs/maml_omniglot_20w1s_10min
             metajax evaluate runs/maml_omniglot_20w1s_10min --shots 5

           131 meta-steps (~0.2/s: 5 second-order steps on 16 20-way tasks); best validation
           59.1 %; test 56.97 +- 0.48 % (20w1s) and 74.15 +- 0.37 % (20w5s, same model), 600
           episodes each; the paper's 95.8 / 98.9 % need its 60,000 steps (~80 hours on one
           core here).
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  five = ways == 5
  return Config(
      name=f"maml_omniglot_{arg}", algorithm="maml",
      algorithm_kwargs=dict(inner_lr=0.4 if five else 0.1, steps=1 if five else 5,
                            eval_steps=3 if five else 5),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride"),
      dataset="omniglot", ways=ways, shots=shots, queries=shots, test_queries=15,
      meta_batch=32 if five else 16, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=10, run_dir=f"runs/maml_omniglot_{arg}")
