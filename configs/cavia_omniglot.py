"""CAVIA on Omniglot (Vinyals split, 28x28, rotations as classes): 5w1s, 20w1s.

Zintgraf et al. (ICML 2019): only a context vector, zero at the start of every task, is adapted
in the inner loop; the network is meta-learned in the outer loop through the context updates.
Here the context (``context_dim=100``, the size the paper gives its image classifier) is
concatenated to every image as constant extra channels (the paper's image network uses FiLM
layers instead), on MAML's Omniglot Conv-4 (64 filters, stride-2 convolutions); 2 inner SGD steps
of 1.0 on the context (the same at test), Adam 1e-3, meta-batch 32 (5-way) / 16 (20-way).

Command:   metajax train configs/cavia_omniglot.py:5w1s
Runtime:   one NVIDIA H200 shared with six other training runs (2026-11-29, jax 0.11.2, code of
           0b0dfda): 3,441 steps in 4.2 minutes (~13.6 steps/s) with ``time_budget_minutes=4.2
           keep_checkpoints=1 eval_every=500 eval_episodes=100``.
Accuracy:  the paper has no Omniglot results. 5w1s after those 3,441 steps: validation 42.9 /
           53.0 / 57.5 / 63.8 / 62.4 / 65.4 / 65.7 % at steps 500 ... 3,000 and 3,441; test
           (600 episodes, 15 queries per class) **65.11 +- 1.09 %**, far below MAML++ in the same
           4.2 minutes (96.37 %, 1,541 steps). Not yet explained. (Checked and ruled out: that
           the transductive BatchNorm would cancel the constant context channels; at
           initialisation a random context moves the logits by 119 % of their norm.)
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "20w1s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``20w1s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"cavia_omniglot_{arg}", algorithm="cavia",
      algorithm_kwargs=dict(context_dim=100, inner_lr=1.0, steps=2),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride"),
      dataset="omniglot", ways=ways, shots=shots, queries=shots, test_queries=15,
      meta_batch=32 if ways == 5 else 16, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/cavia_omniglot_{arg}")
