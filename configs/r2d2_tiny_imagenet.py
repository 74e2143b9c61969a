"""R2D2 (closed-form ridge head) on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

Bertinetto, Henriques, Torr & Vedaldi (ICLR 2019, Sec. 4): ridge regression from the support
embeddings to one-hot labels, solved through the Woodbury identity, with learned regulariser,
scale and bias; more ways in training than at test (16 on miniImageNet), 15 queries per class;
Adam. Here with the standard Conv-4 (64 filters, max-pooled; the paper's own network is wider),
training with the test shots, Adam 1e-3 halved every 2,000 episodes.

Command:   metajax train configs/r2d2_tiny_imagenet.py:5w1s
Runtime:   not yet measured.
Accuracy:  not yet measured (the paper has no Tiny-ImageNet results; its miniImageNet ones use
           its wider network).
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
