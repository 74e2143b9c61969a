"""VERSA (amortized Gaussian posteriors over the head's weights) on Omniglot: 5w1s ... 20w5s.

:func:`metajax.versa` over the standard Conv-4 (64 filters, 2x2 max-pooling, a 64-d
embedding): each class's support embeddings are mean-pooled and an amortization network gives a
diagonal Gaussian over that class's weights and bias; the query predictive averages the softmax
over L = 10 reparameterised weight draws in training and 100 at test (Gordon et al., ICLR 2019,
use L = 10 in training). The amortization network is per class, so any number of classes works
and training uses ProtoNet's recipe: 60-way episodes with the test number of shots and 5 queries
per class, one episode per step, Adam 1e-3 halved every 2,000 episodes, 20,000 episodes, the best
validation checkpoint tested. (Gordon et al. train with their own episode sizes and schedule.)

Command:   metajax train configs/versa_omniglot.py:5w1s
Runtime:   not yet measured for the full schedule; the amortization network and the 10 draws
           are small next to the Conv-4, so expect about ProtoNet's speed on the CPU.
Accuracy:  not yet measured. The paper reports 99.70 / 99.75 / 97.66 / 98.77 % (5w1s / 5w5s /
           20w1s / 20w5s). Smoke run only (2026-11-29, commit 7e3ecdd, 2-core CPU at load average
           16-20): ``metajax train configs/versa_omniglot.py:5w1s ways=5 time_budget_minutes=3
           eval_every=1000000`` trained 321 5-way episodes in 3.8 min, then 83.14 +- 0.78 %
           (600 test episodes, 100 draws). Far from converged; says only that it trains.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``, optionally with ``-cpu30``.

  ``-cpu30`` is the 30-minute budget of a 2-core CPU: 2,000 episodes (the 60-way recipe above)
  with the learning rate annealed along a half cosine over them instead of halved every 2,000,
  validation every 500 episodes, and a 30-minute stop as a guard.
  """
  arg = arg or "5w1s"
  setting, cpu30 = arg.removesuffix("-cpu30"), arg.endswith("-cpu30")
  ways, shots = parse_setting(setting, SETTINGS)
  config = Config(
      name=f"versa_omniglot_{arg}", algorithm="versa",
      algorithm_kwargs=dict(samples=10, test_samples=100, hidden=256),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="omniglot", ways=60, shots=shots, queries=5, test_ways=ways, test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=2_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/versa_omniglot_{arg}")
  if cpu30:
    config = config.replace(meta_steps=2_000, eval_every=500, time_budget_minutes=30.0,
                            optimizer_kwargs=dict(schedule="cosine"))
  return config
