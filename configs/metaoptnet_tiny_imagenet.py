"""MetaOptNet-SVM on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

Lee, Maji, Ravichandran & Soatto (CVPR 2019): per episode a Crammer-Singer multi-class SVM on
the support embeddings (here solved to tolerance by accelerated projected gradient and
differentiated implicitly through its KKT conditions), C=0.1 and the identity added to the
support Gram matrix as in the authors' released code, a learned logit scale, 15 queries per
class. Here with the standard Conv-4 (64 filters, max-pooled; the paper's backbone is a
ResNet-12), training with the test shots, Adam 1e-3 halved every 2,000 episodes, as
``configs/r2d2_tiny_imagenet.py`` does for R2D2 so the two heads compare on one backbone.

Command:   metajax train configs/metaoptnet_tiny_imagenet.py:5w1s
Runtime:   2-core AMD EPYC CPU: ~1.5 s per 10-way 5-shot 10-query episode at 64x64, so the
           20,000-episode schedule would take ~8 hours here; it has not been run.
Accuracy:  the paper has no Tiny-ImageNet results. The 15-minute budget of the Tiny-ImageNet
           table (2026-11-29, code of 6539f51, other jobs at nice 19 beside it), one 10-way model
           tested at both settings as R2D2's row:

             metajax train configs/metaoptnet_tiny_imagenet.py:5w5s ways=10 queries=10 \\
               test_ways=5 time_budget_minutes=15 eval_every=100 eval_episodes=100 \\
               run_dir=runs/metaoptnet_tiny_imagenet_15min
             metajax evaluate runs/metaoptnet_tiny_imagenet_15min --queries 15
             metajax evaluate runs/metaoptnet_tiny_imagenet_15min --shots 1 --queries 15

           591 episodes in 15.3 min (best validation 51.5 % at the last); test classes, 600
           episodes, 15 queries per class: 5w5s **53.70 +- 0.78 %**, 5w1s **39.76 +- 0.81 %**
           (R2D2 in the same budget: 55.49 / 39.18 %; ProtoNet 49.95 / 30.36 %).
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``5w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"metaoptnet_tiny_imagenet_{arg}", algorithm="metaoptnet",
      algorithm_kwargs=dict(C=0.1, dual_ridge=1.0),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="tiny_imagenet", ways=ways, shots=shots, queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=2_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/metaoptnet_tiny_imagenet_{arg}")
