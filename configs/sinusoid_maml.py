"""MAML on sinusoid regression (Finn, Abbeel & Levine, ICML 2017, Sec. 5.1 and Appendix C).

One model is meta-trained per K (K support and K query points per training task) and tested on
1,000 new K-shot tasks, each adapted with alpha=0.01 and scored on 100 new points.

Command:   metajax train configs/sinusoid_maml.py [meta_steps=10000] [shots=10]
Same as:   metajax sinusoid
Runtime:   2-core AMD EPYC CPU (no GPU), 2026-11-23: 48 s (K=5) + 66 s (K=10) of training at
           ~1,100-1,450 meta-steps/s; 127 s in all, with compilation and the test tasks.
Result:    MSE on 1,000 new tasks (mean +- 95% CI) after 0 / 1 / 5 / 10 steps:
             K=5:  3.144 +- 0.192 / 0.608 +- 0.046 / 0.371 +- 0.035 / 0.324 +- 0.029
             K=10: 3.111 +- 0.181 / 0.355 +- 0.026 / 0.143 +- 0.016 / 0.101 +- 0.008
           The paper reports 0.67 / 0.38 / 0.35 (K=5) after 1 / 5 / 10 steps.
"""

from metajax.train.config import SinusoidConfig


def get_config() -> SinusoidConfig:
  """The paper's settings: MLP 40-40, meta-batch 25, alpha=0.01, Adam 1e-3, 70k steps, K=5, 10."""
  return SinusoidConfig(meta_steps=70_000, meta_batch=25, shots=(5, 10), inner_lr=0.01,
                        inner_steps=1, learning_rate=1e-3, seed=0, test_tasks=1_000,
                        run_dir="runs/sinusoid_maml")
