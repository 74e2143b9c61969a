"""SNAIL (temporal convolutions and causal attention over the support sequence) on Omniglot.

:func:`metajax.snail` with the paper's Omniglot sizes (Mishra et al., ICLR 2018, Appendix):
the Conv-4 embedding (64 filters, 2x2 max-pooling, 64-d), then attention (64, 32), a TC block
of 128-filter dense blocks, attention (256, 128), a TC block, attention (512, 256) and a linear
read-out, over the sequence of the ``ways * shots`` support steps (embedding and one-hot label,
in a random order) and one query step (label zeroed). Every query of an episode is appended to
the support sequence on its own. The label inputs and outputs are ``ways`` wide, so a
model trains and tests with the same ways. 8 episodes per step with 5 queries per class (the
paper scores one query per sequence), Adam 1e-3 halved every 5,000 steps, 20,000 steps.

Command:   metajax train configs/snail_omniglot.py:5w1s
Runtime:   one NVIDIA H200, shared with six other training runs (2026-11-29, jax 0.11.2, code
           of commit 0b0dfda): 9,735 of the 20,000 steps in the 4.2 minutes the session's
           device time allowed (~38.5 steps/s), with ``time_budget_minutes=4.2
           keep_checkpoints=1``; the run resumes from its last checkpoint with the same command.
           2-core CPU: ~3.7 s per step, so the schedule is a GPU's job.
Accuracy:  the paper reports 99.07 / 99.78 / 97.64 / 99.36 % (5w1s / 5w5s / 20w1s / 20w5s).
           5w1s after those 9,735 steps (validation 89.73 / 93.49 / 94.97 / 95.26 / 95.41 /
           96.42 / 97.19 / 97.15 / 96.99 / 97.43 % at steps 1,000 ... 9,000 and 9,735): on the
           Vinyals test split, 600 5-way 1-shot episodes, 15 queries per class, the step-9,735
           checkpoint: **97.12 +- 0.35 %**. The other settings are not measured yet. (A 3-minute
           smoke run on the 2-core CPU, 61 steps, was still at chance: the learning starts
           later than that.)
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``."""
  ways, shots = parse_setting(arg or "5w1s", SETTINGS)
  return Config(
      name=f"snail_omniglot_{arg}", algorithm="snail",
      algorithm_kwargs=dict(shots=shots, filters=128),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="omniglot", ways=ways, shots=shots, queries=5, test_queries=15,
      meta_batch=8, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(decay_every=5_000, decay_factor=0.5),
      meta_steps=20_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/snail_omniglot_{arg}")
