"""Prototypical Networks on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Snell, Swersky & Zemel (NeurIPS 2017, Sec. 3.1): Conv-4 with 64 filters and 2x2 max-pooling,
squared Euclidean distance, one episode per step, 60 classes and 5 queries per class in training
episodes with the test number of shots, Adam 1e-3 halved every 2,000 episodes. The paper trains
until the validation loss stops improving; we fix 20,000 episodes and keep the best validation
checkpoint.

Command:   metajax train configs/protonet_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU: ~1.1-1.3 episodes/s (60-way 1-shot) on both cores, ~0.5 on one,
           so 20,000 episodes take ~4.5 hours on two cores, ~10 on one; 11,701 have run
           (below).
Accuracy:  the paper reports 98.8 / 99.7 / 96.0 / 98.9 %. With a 30-minute budget (the same
           network, 60-way 1-shot episodes of train+val, Adam 1e-3 with cosine decay over the
           budget; ``python benchmarks/accuracy_protonet_omniglot.py --minutes 30``, 2026-11-23):
           1,964 episodes, then 98.03 +- 0.27 / 99.56 +- 0.08 / 93.86 +- 0.23 / 98.50 +- 0.08 %
           (5w1s / 5w5s / 20w1s / 20w5s, 600 test episodes each, 95% CI).
           The full 5w1s config, first 105 minutes (2026-11-23, commit bb29623, pinned to one
           core while a MAML run used the other; 1.8-2.3 s per episode):

             taskset -c 1 metajax train configs/protonet_omniglot.py:5w1s time_budget_minutes=105
             metajax evaluate runs/protonet_omniglot_5w1s --ways 20

           2,879 of 20,000 episodes; validation 97.8 / 98.2 / 98.4 % at episodes 1,000 / 2,000 /
           2,879; test (checkpoint of episode 2,879) 98.40 +- 0.23 % at 5w1s and 94.68 +- 0.23 %
           at 20w1s (the 20w1s config trains the same 60-way 1-shot episodes). Resumed with the
           same command on 2026-11-24 (23 min on one core, then ``time_budget_minutes=24`` on
           both at 1.3 episodes/s): 5,641 of 20,000 episodes; best validation 98.65 % (episode
           5,000); test 98.59 +- 0.22 % at 5w1s (600 episodes). Resumed again with
           ``time_budget_minutes=75`` on both cores (2026-11-24, commit 5c1dc98, 1.35 episodes/s):
           11,701 of 20,000 episodes; validation plateaus at 98.6-98.7 % from episode 5,000; best
           98.70 % (episode 10,000); that checkpoint tested with ``metajax evaluate RUN --ways W
           --shots S`` (600 episodes each): 98.67 +- 0.22 / 99.58 +- 0.11 / 95.55 +- 0.21 /
           98.80 +- 0.08 % (5w1s / 5w5s / 20w1s / 20w5s; a 1-shot model at 5 shots, where the
           paper trains a separate 5-shot model). Rerunning the command resumes it.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"protonet_omniglot_{arg}", algorithm="protonet",
      algorithm_kwargs=dict(distance="squared_euclidean"),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="omniglot", ways=60, shots=shots, queries=5, test_ways=ways, test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=2_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/protonet_omniglot_{arg}")
