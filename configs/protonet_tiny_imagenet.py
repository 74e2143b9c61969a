"""Prototypical Networks on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

Snell et al.'s miniImageNet settings (NeurIPS 2017, Sec. 3.2): Conv-4 with 64 filters and
max-pooling, 30-way (1-shot) / 20-way (5-shot) training episodes with 15 queries per class, Adam
1e-3 halved every 2,000 episodes.

Command:   metajax train configs/protonet_tiny_imagenet.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``5w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"protonet_tiny_imagenet_{arg}", algorithm="protonet",
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="tiny_imagenet", ways=30 if shots == 1 else 20, shots=shots, queries=15,
      test_ways=ways, meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=2_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/protonet_tiny_imagenet_{arg}")
