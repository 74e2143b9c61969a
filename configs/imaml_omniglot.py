"""iMAML on Omniglot (Vinyals split, 28x28, rotations as classes): 5w1s, 20w1s.

Rajeswaran, Finn, Kakade & Levine (NeurIPS 2019): each task minimises the proximal support loss
``L(phi) + lam/2 |phi - theta|^2`` with many inner SGD steps, and the meta-gradient
``(I + H/lam)^{-1} grad L_query`` is found by conjugate gradient on Hessian-vector products, so
memory stays flat in the inner steps. Here: MAML's Omniglot Conv-4 (64 filters, stride-2
convolutions, BatchNorm), lam=2, 16 inner SGD steps of 0.03 (the same at test), 5 CG steps,
Adam 1e-3, meta-batch 32 (5-way) / 16 (20-way), K query examples per class in training, 15 at
test. These are metajax's choices in the paper's spirit, not a transcription of its appendix.
The inner step is small because the proximal problem must be (roughly) solved for the implicit
gradient to hold: on 20w1s tasks at initialisation, inner steps of 0.1 diverge for lam=5 and 10
and leave CG residuals above 1 (the learner then stops with an error), while 0.03 leaves
residuals of 0.29-0.55 after 5 CG steps (6 real tasks, ``metrics["implicit_residual"]``).
Even so, a 2-minute smoke run with the default ``on_failure="raise"`` stopped after ~10 meta-steps
on one task whose 5-step CG left a residual of 1.06 (a truncated solve of an indefinite
system), so this config sets ``on_failure="report"``: the mean residual is logged with every
step in ``metrics.jsonl`` instead of stopping the run.

Command:   metajax train configs/imaml_omniglot.py:20w1s
Runtime:   not yet measured for the full schedule. Smoke run only (2026-11-29, 2-core CPU at a
           load average of ~10-13, meta_batch=4): 21 meta-steps in 2.5 min, mean implicit
           residual 0.22-0.45 per step:

             metajax train configs/imaml_omniglot.py:20w1s time_budget_minutes=2 meta_batch=4 \
               eval_every=20 eval_episodes=8 test_episodes=20 eval_batch=4 run_dir=...

           test 14.68 +- 1.24 % on 20 episodes (chance 5 %): a smoke test, not a result.
           On an H200 (2026-11-29, jax 0.11.2, code of 0b0dfda) the run stopped at its first
           step: the GPU vmaps the task batch, and jax.scipy's conjugate gradient asserted on the
           vmapped parameter pytree (the task axis at different positions per leaf). Fixed in
           d0528cd (the solve runs on one flat vector; regression test in
           tests/test_implicit_family.py), not yet rerun on a GPU.
Accuracy:  not yet measured. The paper reports 94.46 +- 0.42 % for 20w1s (MAML: 95.8 %).
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "20w1s")


def get_config(arg: str | None = "20w1s") -> Config:
  """``arg``: ``5w1s`` or ``20w1s``."""
  ways, shots = parse_setting(arg or "20w1s", SETTINGS)
  return Config(
      name=f"imaml_omniglot_{arg}", algorithm="imaml",
      algorithm_kwargs=dict(lam=2.0, inner_lr=0.03, steps=16, cg_steps=5, on_failure="report"),
      model="conv4", model_kwargs=dict(filters=64, pooling="stride"),
      dataset="omniglot", ways=ways, shots=shots, queries=shots, test_queries=15,
      meta_batch=32 if ways == 5 else 16, optimizer="adam", learning_rate=1e-3,
      meta_steps=60_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/imaml_omniglot_{arg}")
