"""Transfer baseline on Tiny-ImageNet: pretrain on the 120 base classes, probe each episode.

As ``configs/baseline_omniglot.py``: a Conv-4 embedding (64 filters) trained with cross-entropy
over all classes of the training split (minibatches of 32 classes x 4 images, global labels),
then each test episode scored by ``algorithm_kwargs.evaluator`` (``"linear_probe"`` by default,
Tian et al. 2020; ``"baseline"``, ``"baseline_plus_plus"``, ``"nearest_centroid"``) on the fixed
embedding.

Command:   metajax train configs/baseline_tiny_imagenet.py:5w1s
           metajax evaluate runs/baseline_tiny_imagenet_5w1s --shots 5 --evaluator baseline
Runtime:   2-core AMD EPYC CPU (2026-11-30, commit 62a6101), a 20-minute budget with the cosine
           fitted to it, sharing the cores with two other training runs (load average 7-9):
             metajax train configs/baseline_tiny_imagenet.py:5w1s time_budget_minutes=20 \
               meta_steps=450 eval_every=150 eval_episodes=100 \
               run_dir=runs/baseline_tiny_imagenet_5w1s-cpu20
           450 steps of 128 images (~2.7 s a step) in 21.5 min with the validations.
Accuracy:  that run, linear probe (l2 = 1), 600 test episodes, 15 queries per class: **39.32 +-
           0.76 %** at 5w1s (validation 35.3 / 38.7 / 39.4 % at steps 150 / 300 / 450). Beside
           ProtoNet, MAML and the other evaluators on the same episodes, at 5w1s and 5w5s: the
           table in docs/guide/transfer.md (``benchmarks/transfer_table.py``).
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
