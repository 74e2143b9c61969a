"""ANIL (head-only inner loop) on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Raghu, Raghu, Bengio & Vinyals (ICLR 2020) train ANIL with MAML's hyperparameters; so do we (see
``maml_omniglot.py``): Conv-4 strided 64 filters, alpha 0.4 / 0.1, 1 / 5 inner steps, meta-batch
32 / 16 (5-way / 20-way), Adam 1e-3, 60k steps.

Command:   metajax train configs/anil_omniglot.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  five = ways == 5
  return Config(
      name=f"anil_omniglot_{arg}", algorithm="anil",
      algorithm_kwargs=dict(inner_lr=0.4 if five else 0.1, steps=1 if five else 5,
                            eval_steps=3 if five else 5),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride"),
      dataset="omniglot", ways=ways, shots=shots, queries=shots, test_queries=15,
      meta_batch=32 if five else 16, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=10, run_dir=f"runs/anil_omniglot_{arg}")
