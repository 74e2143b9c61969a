"""Prototypical Networks on Meta-Dataset-style episodes over the sources available here.

Triantafillou et al. (ICLR 2020, Section 3.2 and Appendix): every training episode comes from one
source (here Omniglot or Tiny-ImageNet, equally likely; miniImageNet and CIFAR-FS join via
``dataset_kwargs.sources`` once their images are in the data folder), with 5-50 ways, up to 10
queries per class and up to 500 support images split across classes by the protocol's
imbalanced rule. Episodes are padded to 500 support and 50 x 10 query slots with masks, so the
meta-step compiles once (``metajax.data.meta_dataset``). Sources are resized to 28x28 RGB (the
paper uses 84x84; 28 keeps a CPU run affordable). Conv-4, 64 filters, Adam 1e-3; BatchNorm
uses masked episode statistics (padding excluded). Validation: fixed 5-way 5-shot episodes of
the sources' validation classes together.

Command:   metajax train configs/meta_dataset_protonet.py
           metajax evaluate runs/meta_dataset_protonet --split test:omniglot --ways 5 --shots 5
           metajax evaluate runs/meta_dataset_protonet --split test:tiny_imagenet --ways 5 \\
               --shots 5
           (``:smoke`` trains 40 episodes for a quick check.)
Runtime:   ~3.3-3.7 s per episode on the 2-core CPU while it ran beside another training run
           (load average 7-10, 2026-11-29): 502 episodes in 30 min (``time_budget_minutes=30``);
           the full 20,000 episodes would take ~18 hours there. (The 40-episode smoke run took
           about 3 minutes.)
Accuracy:  after 502 episodes (30 min), 600 fixed 5-way episodes per source's test classes, 15
           queries per class: Omniglot 92.45 +- 0.53 % (1-shot), 98.28 +- 0.18 % (5-shot);
           Tiny-ImageNet 34.62 +- 0.72 % (1-shot), 49.71 +- 0.67 % (5-shot). Trained on
           Omniglot alone (``'dataset_kwargs.probabilities={"omniglot": 1.0,
           "tiny_imagenet": 0.0}'``, 259 episodes, 15 min), Tiny-ImageNet across domains:
           26.14 +- 0.54 % / 32.82 +- 0.58 %. Commands: docs/guide/meta_dataset.md.
"""

from metajax.train.config import Config


def get_config(arg: str | None = None) -> Config:
  """``arg``: ``None`` (the full schedule) or ``"smoke"`` (40 episodes, a pipeline check)."""
  smoke = arg == "smoke"
  return Config(
      name="meta_dataset_protonet" + ("_smoke" if smoke else ""), algorithm="protonet",
      algorithm_kwargs=dict(distance="squared_euclidean"),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="meta_dataset",
      dataset_kwargs=dict(sources=("omniglot", "tiny_imagenet"), image_size=28,
                          probabilities={"omniglot": 0.5, "tiny_imagenet": 0.5}),
      # ways = the padded class width (min(50, classes)); episodes have 5..50 real classes.
      ways=50, shots=5, queries=5, test_ways=5, test_shots=5, test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      meta_steps=40 if smoke else 20_000, eval_every=20 if smoke else 1_000,
      eval_episodes=20 if smoke else 200, test_episodes=20 if smoke else 600,
      adaptation_steps=0,
      run_dir="runs/meta_dataset_protonet" + ("_smoke" if smoke else ""))
