"""SNAIL (temporal convolutions and causal attention over the support sequence) on Omniglot.

:func:`metajax.snail` with the paper's Omniglot sizes (Mishra et al., ICLR 2018, Appendix):
the Conv-4 embedding (64 filters, 2x2 max-pooling, 64-d), then attention (64, 32), a TC block
of 128-filter dense blocks, attention (256, 128), a TC block, attention (512, 256) and a linear
read-out, over the sequence of the ``ways * shots`` support steps (embedding and one-hot label,
in a random order) and one query step (label zeroed). Every query of an episode is appended to
the support sequence on its own. The label inputs and outputs are ``ways`` wide, so a
model trains and tests with the same ways. 8 episodes per step with 5 queries per class (the
paper scores one query per sequence), Adam 1e-3 halved every 5,000 steps, 20,000 steps.

Command:   metajax train configs/snail_omniglot.py:5w1s
Runtime:   not yet measured for the full schedule.
Accuracy:  not yet measured. The paper reports 99.07 / 99.78 / 97.64 / 99.36 % (5w1s / 5w5s /
           20w1s / 20w5s). Smoke run only (2026-11-29, commit aa6c8b8, 2-core CPU at load average
           11-15): ``metajax train configs/snail_omniglot.py:5w1s time_budget_minutes=3
           eval_every=1000000`` ran 61 steps (488 episodes) in 3.8 min at ~3.7 s/step and was
           still at chance (loss ln 5; test 20.47 +- 0.75 %): SNAIL has not yet been shown to
           learn Omniglot here.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"snail_omniglot_{arg}", algorithm="snail",
      algorithm_kwargs=dict(shots=shots, filters=128),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="omniglot", ways=ways, shots=shots, queries=5, test_queries=15,
      meta_batch=8, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=5_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/snail_omniglot_{arg}")
