"""MAML-RL on 2D point navigation (Finn, Abbeel & Levine, ICML 2017, Section 5.3 / Figure 5).

A point starts at the origin and moves toward a goal drawn uniformly in [-0.5, 0.5]^2 (actions
clipped to [-0.1, 0.1], reward minus the distance, 100-step episodes). The policy is a 2 x 100
ReLU MLP with a Gaussian head; the inner loop is one REINFORCE step (alpha = 0.1, linear feature
baseline) on 20 episodes, over 20 goals per outer step, with the paper's meta-gradient estimator
(no inner score term: the unbiased one did not learn here, see Result). The outer step is Adam
3e-3 (maml) or TRPO with max_kl 0.01 (trpo, as the paper). The test adapts to 100 fresh goals
with 0..3 policy-gradient steps of sizes 0.1, 0.05, 0.05 (the paper's test script halves the
step after the first), 20 episodes each, and reports the mean return per episode (discounted,
gamma = 0.99) +- 95% CI after each, for the trained and the untrained policy (``results.json``,
``adaptation.png``; ``benchmarks/maml_rl_figure5.py`` puts several runs in one figure).

Command:   metajax train configs/maml_rl_navigation.py:trpo   (or :maml, :pretrained, ...)
Settings:  trpo (second-order MAML-RL, TRPO outer step, 100 iterations), maml (the same with
           Adam, 500 steps), unbiased (maml with the inner score term), first_order
           (first-order MAML-RL), pretrained (the paper's "pretrained on all goals" baseline:
           no inner step, a plain policy gradient on the mixture of goals), smoke (a tiny run).
Runtime:   on the shared 2-core CPU with two runs at a time (2026-11-30): trpo ~10 minutes
           (~5 s per iteration), maml and pretrained ~4 minutes each, plus the test.
Result:    mean return on 100 new goals after 0 / 1 / 2 / 3 steps (docs/guide/meta_rl.md):
           trpo -25.6 / -12.4 / -8.8 / -7.4; maml -25.7 / -10.9 / -13.6 / -18.5;
           pretrained -26.0 / -25.6 / -25.4 / -25.2; random init -53.4 / -47.7 / -42.2 / -39.4
           (95% CIs 0.5-2.3, maml at 3 steps 8.5). The MAML paper's Figure 5 ordering.
"""

from metajax.train.rl import RLConfig

SETTINGS = ("maml", "unbiased", "trpo", "first_order", "pretrained", "smoke")


def get_config(setting: str = "maml") -> RLConfig:
  """The Section 5.3 setup; ``setting`` picks MAML, first-order MAML, the pretrained baseline."""
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r} is not one of {list(SETTINGS)}")
  # score_term=False: the paper's estimator (see the docstring's Result for why).
  algorithm_kwargs = {"inner_lr": 0.1, "steps": 1, "gamma": 0.99, "baseline": "linear",
                      "score_term": False, "hidden": (100, 100), "learning_rate": 3e-3,
                      "tasks_per_step": 20}
  env_kwargs, episodes, meta_steps, test_tasks = {"horizon": 100}, 20, 500, 100
  if setting == "unbiased":
    algorithm_kwargs["score_term"] = True
  elif setting == "trpo":  # the paper's reference code runs 100 TRPO iterations
    algorithm_kwargs.pop("learning_rate")
    algorithm_kwargs.update(outer="trpo", max_kl=0.01)
    meta_steps = 100
  elif setting == "first_order":
    algorithm_kwargs["first_order"] = True
  elif setting == "pretrained":
    algorithm_kwargs["steps"] = 0
  elif setting == "smoke":
    algorithm_kwargs.update(hidden=(32, 32), tasks_per_step=4)
    env_kwargs, episodes, meta_steps, test_tasks = {"horizon": 20}, 5, 5, 20
  return RLConfig(
      name=f"maml_rl_navigation_{setting}", algorithm="maml_rl", env="point_navigation",
      env_kwargs=env_kwargs, episodes=episodes, algorithm_kwargs=algorithm_kwargs,
      meta_steps=meta_steps, seed=0, log_every=1 if setting == "smoke" else 5,
      checkpoint_every=50, test_tasks=test_tasks, adapt_steps=3 if setting != "smoke" else 2,
      # The paper's test script (cbfinn/maml_rl, maml_examples/test_maml_point.py) halves the
      # step size after the first step; every initialisation is adapted the same way.
      adapt_step_sizes=(0.1, 0.05, 0.05) if setting != "smoke" else None,
      run_dir=f"runs/maml_rl_navigation_{setting}")
