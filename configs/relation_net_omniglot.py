"""Relation Networks on Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.

Sung et al. (CVPR 2018, Sec. 4.1 and Fig. 2): embedding of four 3x3 conv blocks with 64 filters,
BatchNorm and ReLU, 2x2 max-pooling in the first two (28x28 -> 7x7x64 feature maps); relation
module of two conv blocks (64 filters, max-pooled) and a 8-unit hidden layer; mean squared error
between the sigmoid relation scores and the one-hot labels; Adam 1e-3 halved every 100,000
episodes; one episode per step with 19 / 15 / 10 / 5 queries per class (5w1s / 5w5s / 20w1s /
20w5s). Differences: 'SAME' padding everywhere (the paper's embedding pads only its last two
blocks, giving 5x5 maps), and a fixed number of episodes with the best validation checkpoint.

Command:   metajax train configs/relation_net_omniglot.py:5w1s
Runtime:   one H100 (jax 0.11.2 with CUDA, shared by three to six runs at once): 200-250
           episodes/s (5w1s, 5w5s, 20w1s) and ~160 (20w5s) with the validations, so the
           200,000 episodes take 14-20 minutes; the paper's 1M would take about 1.2 hours.
           2-core AMD EPYC CPU: ~1.3 episodes/s for 5w1s (measured after the relation module
           moved to the matmul convolution; 0.95 before), so 200,000 episodes (~2 days) are
           out of reach there; 5w5s runs at 5.5 meta-steps/s since commit 1a293c7 (2.7 before,
           when a 5-shot episode carried 25 class columns, 20 of them empty;
           ``python benchmarks/bench_class_width.py``). Since commit
           0d1d34a the module's first convolution runs once per query and once per class
           (``split_pairs``):
           ``metajax evaluate runs/relation_net_omniglot_5w1s_15min --episodes 50 --ways 20``
           took 6m31 before (commit 2477290) and 3m00 after, on one shared core, both 79.23 %.
Accuracy:  the paper reports 99.6 / 99.8 / 97.6 / 99.1 % after 1M episodes. This config's
           200,000-episode schedule on the H100 (2026-11-24, commit 2cdc8f0; every call added
           ``time_budget_minutes=7 keep_checkpoints=1`` and the runs resumed across calls;
           the 20w5s run also ``eval_batch=10``, since three runs shared the GPU's memory):

             metajax train configs/relation_net_omniglot.py:5w1s   # and :5w5s, :20w1s, :20w5s

           tested on the Vinyals test split (600 episodes, 15 queries per class, best
           validation checkpoint): 5w1s 99.16 +- 0.17 % (all 200,000 episodes; best at
           152,000), 5w5s 99.68 +- 0.08 % (all 200,000; best at 128,000), 20w1s 97.47 +-
           0.15 % (179,002 episodes had run; best at 98,000), 20w5s 99.01 +- 0.07 % (73,176
           episodes; best at 52,000). Rerunning a command resumes its run. The 5-shot runs
           predate commit 1a293c7: their relation module's batch norm also counted the pairs
           of 20 (5w5s) or 80 (20w5s) empty class columns, so the 5w5s checkpoint tests at
           97.52 +- 0.27 % under the current code, which normalises over the real pairs as the
           paper does (rerun the 5-shot configs to match); the 1-shot runs are unchanged by
           that commit (no empty columns at 1 shot). With that commit, on the 2-core CPU:

             metajax train configs/relation_net_omniglot.py:5w5s time_budget_minutes=30 \
               run_dir=runs/relation_net_omniglot_5w5s_30min

           9,061 episodes in 30.1 min (validation 98.9 / 99.3 / 99.4 % at episodes 2,000 /
           4,000 / 6,000, then flat); test 99.29 +- 0.13 % (600 episodes).
           Earlier, on the CPU, 5w1s with a 15-minute budget (2026-11-23, commit d654a89,
           relation module on XLA convolutions):

             metajax train configs/relation_net_omniglot.py:5w1s time_budget_minutes=15 \
               eval_every=500 run_dir=runs/relation_net_omniglot_5w1s_15min

           721 episodes in 15.2 min; test 92.59 +- 0.51 % (600 episodes of the Vinyals test
           split, 15 queries per class, best validation checkpoint). Far from converged.
           Train each setting with its own shots: the class feature map is the sum over the
           class's supports (the paper's rule), so this 1-shot model tested at 5w5s
           (``metajax evaluate RUN --shots 5``) sees inputs 5x larger and scores 45.25 +- 1.31 %.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")
TRAIN_QUERIES = {"5w1s": 19, "5w5s": 15, "20w1s": 10, "20w5s": 5}


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  arg = arg or "5w1s"
  ways, shots = parse_setting(arg, SETTINGS)
  return Config(
      name=f"relation_net_omniglot_{arg}", algorithm="relation_net",
      algorithm_kwargs=dict(relation_filters=64, relation_hidden=8),
      model="conv4", model_kwargs=dict(filters=64, pooling="max", pooled_blocks=2,
                                       flatten=False),
      dataset="omniglot", ways=ways, shots=shots, queries=TRAIN_QUERIES[arg], test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=100_000, decay_factor=0.5),
      meta_steps=200_000, eval_every=2_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/relation_net_omniglot_{arg}")
