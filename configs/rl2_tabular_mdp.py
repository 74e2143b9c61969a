"""RL² on random tabular MDPs (Duan et al., 2016, Section 3.2).

10 states x 5 actions, flat-Dirichlet transitions, mean rewards ~ N(1, 1) with unit reward noise,
episodes of 10 steps from state 0; a trial is n episodes on one MDP and the GRU keeps its memory
across them. The test scores the total reward per trial on 1,000 fresh MDPs (mean +- 95% CI).

Command:   metajax train configs/rl2_tabular_mdp.py:n10 [meta_steps=400]
Settings:  n10, n25, n50, n75, n100 (episodes per trial, as RL² Table 2).
Runtime:   n10 with meta_steps=400: a few minutes on a loaded 2-core CPU (trials of 100 steps).
Result:    not measured to convergence; see docs/guide/meta_rl.md for the short run.
"""

from metajax.train.rl import RLConfig

SETTINGS = ("n10", "n25", "n50", "n75", "n100")


def get_config(setting: str = "n10") -> RLConfig:
  """GRU 256, PPO with gamma=0.99 over the whole trial, 64 trials per step."""
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r} is not one of {list(SETTINGS)}")
  episodes = int(setting[1:])
  return RLConfig(
      name=f"rl2_tabular_mdp_{setting}", algorithm="rl2", env="tabular_mdp",
      env_kwargs={"states": 10, "actions": 5, "episode_length": 10}, episodes=episodes,
      algorithm_kwargs={"hidden": 256, "tasks_per_step": 64, "minibatches": 4,
                        "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.95,
                        "entropy_coef": 0.01, "reward_scale": 0.1},
      meta_steps=5000, log_every=25, checkpoint_every=500, test_tasks=1000,
      run_dir=f"runs/rl2_tabular_mdp_{setting}")
