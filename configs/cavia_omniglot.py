"""CAVIA on Omniglot (Vinyals split, 28x28, rotations as classes): 5w1s, 20w1s.

Zintgraf et al. (ICML 2019): only a context vector, zero at the start of every task, is adapted
in the inner loop; the network is meta-learned in the outer loop through the context updates.
Here the context (``context_dim=100``, the size the paper gives its image classifier) enters,
as in the paper's image network, by FiLM: after each of the four blocks' BatchNorm a linear map
of the context scales and shifts every channel (``model_kwargs.conditioning="film"``,
:class:`metajax.models.FiLMConv4`; the authors' code conditions one block only, ``film_blocks``
selects). ``model_kwargs.conditioning=concat`` concatenates the context to every image as
constant extra channels instead (the paper's regression setting). MAML's Omniglot Conv-4 (64
filters, stride-2 convolutions); 2 inner SGD steps of 1.0 on the context (the same at test),
Adam 1e-3, meta-batch 32 (5-way) / 16 (20-way).

Command:   metajax train configs/cavia_omniglot.py:5w1s
Runtime:   2-core AMD EPYC CPU, one core (``taskset -c 0``): ~1.1 s per meta-step with FiLM, ~2-4
           s with the 101-channel first convolution of ``conditioning=concat``.
Accuracy:  the paper has no Omniglot results. FiLM against concatenation, 300 meta-steps each,
           side by side on one core each (2026-11-29, code of 1175403):

             taskset -c 0 metajax train configs/cavia_omniglot.py:5w1s \\
               model_kwargs.conditioning=film meta_steps=300 eval_every=50 eval_episodes=100 \\
               run_dir=runs/cavia_5w1s_film_300        # and conditioning=concat on core 1

           | 5w1s, 300 steps | validation at steps 50 / 100 / 150 / 200 / 250 / 300 | test |
           |---|---|---|
           | FiLM (5.5 min) | 29.1 / 45.2 / 55.9 / 59.3 / 63.4 / 66.0 % | **64.39 +- 0.99 %** |
           | concat (11.5 min) | 23.0 / 24.6 / 27.8 / 30.1 / 33.8 / 35.7 % | 34.88 +- 0.85 % |

           (test: 600 episodes of the Vinyals test split, 15 queries per class.) Concatenation
           learns far more slowly: an earlier run of this config with it (one NVIDIA H200 shared
           with six other runs, jax 0.11.2, code of 0b0dfda, ``time_budget_minutes=4.2
           eval_every=500 eval_episodes=100``) reached 3,441 steps in 4.2 minutes and tested at
           65.11 +- 1.09 %, what FiLM reaches in 300. The full 60,000-step schedule has not been
           run with either.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "20w1s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``20w1s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"cavia_omniglot_{arg}", algorithm="cavia",
      algorithm_kwargs=dict(context_dim=100, inner_lr=1.0, steps=2),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride", conditioning="film"),
      dataset="omniglot", ways=ways, shots=shots, queries=shots, test_queries=15,
      meta_batch=32 if ways == 5 else 16, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/cavia_omniglot_{arg}")
