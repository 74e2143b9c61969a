"""Prototypical Networks on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

Snell et al.'s miniImageNet settings (NeurIPS 2017, Sec. 3.2): Conv-4 with 64 filters and
max-pooling, 30-way (1-shot) / 20-way (5-shot) training episodes with 15 queries per class, Adam
1e-3 halved every 2,000 episodes.

Command:   metajax train configs/protonet_tiny_imagenet.py:5w1s
Runtime:   2-core AMD EPYC CPU: ~2.9 s per 10-way 5-shot 10-query episode at 64x64, so the
           20,000-episode schedule would take ~16 hours (30-way episodes longer still); it has
           not been run.
Accuracy:  measured with a 15-minute budget (2026-11-23, commit c2d2236), training 10-way
           5-shot 10-query episodes and testing one model at both settings:

             metajax train configs/protonet_tiny_imagenet.py:5w5s ways=10 queries=10 \
               time_budget_minutes=15 eval_every=100 eval_episodes=100 \
               run_dir=runs/protonet_tiny_imagenet_15min
             metajax evaluate runs/protonet_tiny_imagenet_15min --shots 1

           311 episodes in 16 min (best validation 47.2 % at episode 300); test classes, 600
           episodes, 15 queries per class: 5w5s 49.95 +- 0.80 %, 5w1s 30.36 +- 0.64 %. Far from
           converged (the validation accuracy was still rising).
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
