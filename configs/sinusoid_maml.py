"""MAML on sinusoid regression (Finn, Abbeel & Levine, ICML 2017, Sec. 5.1 and Appendix C).

Command:   metajax train configs/sinusoid_maml.py [meta_steps=10000]
Same as:   metajax sinusoid
Runtime:   not yet measured with this config (2-core CPU).
Result:    not yet measured; the paper reports MSE 0.67 / 0.38 / 0.35 (K=5) after 1 / 5 / 10 steps.
"""

from metajax.train.config import SinusoidConfig


def get_config() -> SinusoidConfig:
  """The paper's settings: MLP 40-40, K=10, meta-batch 25, alpha=0.01, Adam 1e-3, 70k steps."""
  return SinusoidConfig(meta_steps=70_000, meta_batch=25, shots=10, inner_lr=0.01, inner_steps=1,
                        learning_rate=1e-3, seed=0, test_tasks=1_000,
                        run_dir="runs/sinusoid_maml")
