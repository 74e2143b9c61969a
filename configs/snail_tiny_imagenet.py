"""SNAIL on Tiny-ImageNet (64x64, fixed 120/40/40 class split): 5w1s, 5w5s.

:func:`metajax.snail` as in ``configs/snail_omniglot.py`` (Mishra et al., ICLR 2018): the
Conv-4 embedding (64 filters, 2x2 max-pooling; 4x4x64 = 1,024 features at 64x64), then
attention (64, 32), a TC block, attention (256, 128), a TC block, attention (512, 256) and a
linear read-out over the ``ways * shots`` support steps and one query step. The label inputs
and outputs are ``ways`` wide, so each setting trains its own model at the test ways and shots
(unlike the ProtoNet/R2D2/VERSA rows of the Tiny-ImageNet table, which test one 10-way model at
both shots). 8 episodes per step with 5 queries per class, Adam 1e-3 halved every 5,000 steps,
20,000 steps: the paper's miniImageNet recipe in shape, not a transcription of its appendix.

Command:   metajax train configs/snail_tiny_imagenet.py:5w5s
Runtime:   2-core AMD EPYC CPU: ~2.2 s (5w1s) / ~3.9 s (5w5s) per step of 8 episodes, so the
           20,000-step schedule would take 12-22 hours here; it has not been run.
Accuracy:  only the 15-minute budget of the Tiny-ImageNet table (docs/results/tiny_imagenet.md),
           2026-11-29, other jobs at nice 19 beside it:

             metajax train configs/snail_tiny_imagenet.py:5w5s time_budget_minutes=15 \\
               eval_every=50 eval_episodes=100 run_dir=runs/snail_tiny_imagenet_5w5s_15min

           and the same with ``:5w1s``: 241 steps (5w5s) and 406 steps (5w1s), still at chance,
           test 19.90 +- 0.41 % (5w5s) and 19.74 +- 0.45 % (5w1s), 600 episodes, 15 queries per
           class. On Omniglot (on a GPU) its training accuracy had left chance by steps 100-200
           (29 % over those steps, 52 % over 200-300); here 406 steps were not enough. The paper
           reports 55.71 / 68.88 % on miniImageNet 5w1s / 5w5s (a different dataset: 84x84
           images, 64/16/20 classes).
"""

from pathlib import Path

from metajax.train.config import Config, load_config, parse_setting

SETTINGS = ("5w1s", "5w5s")


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: ``5w1s`` or ``5w5s``: SNAIL's Omniglot config on Tiny-ImageNet."""
  arg = arg or "5w1s"
  parse_setting(arg, SETTINGS)
  omniglot = load_config(f"{Path(__file__).with_name('snail_omniglot.py')}:{arg}")
  return omniglot.replace(name=f"snail_tiny_imagenet_{arg}", dataset="tiny_imagenet",
                          run_dir=f"runs/snail_tiny_imagenet_{arg}")
