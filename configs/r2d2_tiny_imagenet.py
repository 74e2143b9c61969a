"""R2D2 (closed-form ridge head) on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

Bertinetto, Henriques, Torr & Vedaldi (ICLR 2019, Sec. 4): ridge regression from the support
embeddings to one-hot labels, solved through the Woodbury identity, with learned regulariser,
scale and bias; more ways in training than at test (16 on miniImageNet), 15 queries per class;
Adam. Here with the standard Conv-4 (64 filters, max-pooled; the paper's own network is wider),
training with the test shots, Adam 1e-3 halved every 2,000 episodes.

Command:   metajax train configs/r2d2_tiny_imagenet.py:5w1s
Runtime:   2-core AMD EPYC CPU: ~2.8 s per 10-way 5-shot 10-query episode at 64x64, so the
           20,000-episode schedule would take ~16 hours; it has not been run.
Accuracy:  the paper has no Tiny-ImageNet results (its miniImageNet ones use its wider
           network). Measured with a 15-minute budget (2026-11-23, commit c2d2236), training
           10-way 5-shot 10-query episodes and testing one model at both settings:

             metajax train configs/r2d2_tiny_imagenet.py:5w5s ways=10 queries=10 \
               time_budget_minutes=15 eval_every=100 eval_episodes=100 \
               run_dir=runs/r2d2_tiny_imagenet_15min
             metajax evaluate runs/r2d2_tiny_imagenet_15min --shots 1

           331 episodes in 16 min (best validation 53.7 % at episode 331); test classes, 600
           episodes, 15 queries per class: 5w5s 55.49 +- 0.77 %, 5w1s 39.18 +- 0.76 %. Far from
           converged.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``5w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"r2d2_tiny_imagenet_{arg}", algorithm="r2d2",
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="tiny_imagenet", ways=16, shots=shots, queries=15, test_ways=ways,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=2_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/r2d2_tiny_imagenet_{arg}")
