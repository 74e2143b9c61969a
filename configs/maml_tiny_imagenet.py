"""MAML on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

MAML's miniImageNet settings (Finn, Abbeel & Levine, ICML 2017, Sec. 5.2): Conv-4 with 32
filters and max-pooling, 5 inner steps alpha=0.01 (10 at test), meta-batch 4 (1-shot) / 2
(5-shot), 15 queries per class, Adam 1e-3, 60,000 meta-steps.

Command:   metajax train configs/maml_tiny_imagenet.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``5w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"maml_tiny_imagenet_{arg}", algorithm="maml",
      algorithm_kwargs=dict(inner_lr=0.01, steps=5, eval_steps=10),
      model="conv4", model_kwargs=dict(filters=32, pooling="max"),
      dataset="tiny_imagenet", ways=ways, shots=shots, queries=15,
      meta_batch=4 if shots == 1 else 2, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=10, run_dir=f"runs/maml_tiny_imagenet_{arg}")
