"""MAML on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

MAML's miniImageNet settings (Finn, Abbeel & Levine, ICML 2017, Sec. 5.2): Conv-4 with 32
filters and max-pooling, 5 inner steps alpha=0.01 (10 at test), meta-batch 4 (1-shot) / 2
(5-shot), 15 queries per class, Adam 1e-3, 60,000 meta-steps.

Command:   metajax train configs/maml_tiny_imagenet.py:5w1s
Runtime:   2-core AMD EPYC CPU (no GPU), 2026-11-23: ~6.8 s per meta-step (4 tasks, 5 second-order
           steps at 64x64; the machine was also running the test suite), so 60,000 steps would
           take ~4.7 days; measured only with a 15-minute budget:

             metajax train configs/maml_tiny_imagenet.py:5w1s time_budget_minutes=15 \
               eval_every=100 eval_episodes=100 run_dir=runs/maml_tiny_imagenet_5w1s_15min

Accuracy:  130 meta-steps; test 31.79 +- 0.69 % (5w1s, 600 episodes of the test classes, 15
           queries per class, 10 inner steps): barely above chance (20 %) after so few steps.
           5w5s with an 8-minute budget (2026-11-23, pinned to one core with ``taskset -c 1``;
           the validations at steps 50 and 51 took the run to 12.5 min):

             metajax train configs/maml_tiny_imagenet.py:5w5s time_budget_minutes=8 \
               eval_every=50 eval_episodes=50 adaptation_steps=0 \
               run_dir=runs/maml_tiny_imagenet_5w5s_8min

           51 meta-steps; validation 39.9 %; test 39.02 +- 0.66 % (600 episodes, 10 inner
           steps). MAML reports 48.70 / 63.11 % on miniImageNet (not this dataset).
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
