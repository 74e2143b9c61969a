"""Siamese Networks (learned weighted L1 distance) on Omniglot: 5w1s, 20w1s.

Koch, Zemel & Salakhutdinov (ICML DL Workshop 2015) train twin networks on same/different pairs
and classify N-way one-shot by the most similar support image. Here the twins are Conv-4 (64
filters, max-pooled, 28x28 inputs of the Vinyals split) instead of the paper's 105x105 network,
and the pairs are every (query, support) pair of a training episode, with same and different
pairs weighted equally (see :func:`metajax.siamese`); Adam 1e-3 halved every 2,000 episodes.
Test: N-way one-shot classification, 15 queries per class, 600 episodes.

Command:   metajax train configs/siamese_omniglot.py:20w1s
Runtime:   2-core AMD EPYC CPU (no GPU): ~3 episodes/s (20-way 1-shot 5-query), so 20,000
           episodes take ~2 hours; measured only with a 6-minute budget so far (2026-11-23):

             metajax train configs/siamese_omniglot.py:5w1s time_budget_minutes=6 \
               eval_every=250 eval_episodes=100 run_dir=runs/siamese_omniglot_5w1s_6min

           1,057 training episodes in 6 min.
Accuracy:  5-way one-shot after those 6 minutes: best validation 88.6 %; test 88.49 +- 0.68 %
           (600 episodes of the Vinyals test split, 15 queries per class). The paper reports
           92.0 % on its own 20-way one-shot task.
           20w1s with a 10-minute budget (2026-11-23, pinned to one core with ``taskset -c 1``
           while a MAML run used the other):

             metajax train configs/siamese_omniglot.py:20w1s time_budget_minutes=10 \
               eval_every=250 eval_episodes=100 run_dir=runs/siamese_omniglot_20w1s_10min

           781 training episodes in 10.8 min (~1.5 episodes/s on one core); validation 33.9 /
           51.4 / 59.6 / 60.7 % at episodes 250 / 500 / 750 / 781; test 60.93 +- 0.49 % (600
           20-way one-shot episodes): far from converged.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "20w1s")


def get_config(arg: str | None = "20w1s") -> Config:
  """``arg``: ``5w1s`` or ``20w1s``."""
  ways, shots = parse_setting(arg or "20w1s", SETTINGS)
  return Config(
      name=f"siamese_omniglot_{arg}", algorithm="siamese",
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="omniglot", ways=20, shots=1, queries=5, test_ways=ways, test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=2_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/siamese_omniglot_{arg}")
