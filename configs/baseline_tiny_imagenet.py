"""Transfer baseline on Tiny-ImageNet: pretrain on the 120 base classes, probe each episode.

As ``configs/baseline_omniglot.py``: a Conv-4 embedding (64 filters) trained with cross-entropy
over all classes of the training split (minibatches of 32 classes x 4 images, global labels),
then each test episode scored by ``algorithm_kwargs.evaluator`` (``"linear_probe"`` by default,
Tian et al. 2020; ``"baseline"``, ``"baseline_plus_plus"``, ``"nearest_centroid"``) on the fixed
embedding.

Command:   metajax train configs/baseline_tiny_imagenet.py:5w1s
           metajax evaluate runs/baseline_tiny_imagenet_5w1s --shots 5 --evaluator baseline
Runtime:   not yet measured.
Accuracy:  not yet measured.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: the test setting, ``5w1s`` or ``5w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"baseline_tiny_imagenet_{arg}", algorithm="pretrain",
      algorithm_kwargs=dict(evaluator="linear_probe", classifier="linear"),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="tiny_imagenet", ways=32, shots=2, queries=2,
      test_ways=ways, test_shots=shots, test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(schedule="cosine"),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/baseline_tiny_imagenet_{arg}")
