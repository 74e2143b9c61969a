"""MetaOptNet-SVM on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

Lee, Maji, Ravichandran & Soatto (CVPR 2019): per episode a Crammer-Singer multi-class SVM on
the support embeddings (here solved to tolerance by accelerated projected gradient and
differentiated implicitly through its KKT conditions), C=0.1 and the identity added to the
support Gram matrix as in the authors' released code, a learned logit scale, 15 queries per
class. Here with the standard Conv-4 (64 filters, max-pooled; the paper's backbone is a
ResNet-12), training with the test shots, Adam 1e-3 halved every 2,000 episodes, as
``configs/r2d2_tiny_imagenet.py`` does for R2D2 so the two heads compare on one backbone.

Command:   metajax train configs/metaoptnet_tiny_imagenet.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured (the paper has no Tiny-ImageNet results).
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
