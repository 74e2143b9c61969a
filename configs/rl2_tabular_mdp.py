"""RL² on random tabular MDPs (Duan et al., 2016, Section 3.2).

10 states x 5 actions, flat-Dirichlet transitions, mean rewards ~ N(1, 1) with unit reward noise,
episodes of 10 steps from state 0; a trial is n episodes on one MDP and the GRU keeps its memory
across them. The test scores the total reward per trial on 1,000 fresh MDPs (mean +- 95% CI).

Command:   metajax train configs/rl2_tabular_mdp.py:n10 [meta_steps=400]
           python benchmarks/rl2_tabular_mdp_baselines.py --episodes 10   # the baselines
Settings:  n10, n25, n50, n75, n100 (episodes per trial, as RL² Table 2).
Runtime:   n10: about 1 PPO step/s on one core of the 2-core CPU (256 trials of 100 steps).
Result:    n10, stopped at step 2,250 of 3,000 (38 min on one core): 124.47 +- 1.76 total
           reward per trial on 1,000 fresh MDPs (greedy actions 125.01 +- 1.77), against
           random 101.24, PSRL 134.57, greedy (posterior mean) 155.84 and the oracle 219.55 on
           the same MDPs (benchmarks/results/rl2_tabular_mdp_*.json): below the baselines;
           see docs/guide/meta_rl.md. n25, 1,500 steps (47 min on one core): 316.14 +- 4.11
           (greedy actions 312.81 +- 4.23) against random 251.66, PSRL 406.94 and greedy
           436.95 (rl2_tabular_mdp_n25_1500steps.json). n10 with gamma=1.0, 3,000 steps (33
           min): 123.06 +- 1.80, no gain (rl2_tabular_mdp_n10_gamma1_3000steps.json); nor
           with 512 trials per step, 3,000 steps (62 min): 125.41 +- 1.78
           (rl2_tabular_mdp_n10_b512_3000steps.json); nor with the previous state in the
           input (algorithm_kwargs.previous_observation=True), stopped at 1,000 steps: 115.61
           +- 1.86, learning no faster; nor with learning rate 1e-3 (3,000 steps): 122.49 +-
           1.74, nor with entropy_coef 0.05 (stopped at 1,500): 113.65 +- 1.40, nor with
           1e-3 and GRU 256 (stopped at 1,250): 117.46 +- 1.64, nor with 1e-3 and time_input
           (2,500 steps): 121.89 +- 1.73 (docs/guide/meta_rl.md). Even the transition-blind
           myopic strategy scores 150.59 on these MDPs.
           n50 and above not trained.
"""

from metajax.train.rl import RLConfig

SETTINGS = ("n10", "n25", "n50", "n75", "n100")


def get_config(setting: str = "n10") -> RLConfig:
  """GRU 128, PPO with gamma=0.99 over the whole trial, 256 trials per step.

  Value targets scaled to about unit size (``reward_scale=0.02``); with the earlier GRU 256,
  64 trials per step and learning rate 1e-3 the return stayed near random (~105) for 1,000
  steps.
  """
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r} is not one of {list(SETTINGS)}")
  episodes = int(setting[1:])
  return RLConfig(
      name=f"rl2_tabular_mdp_{setting}", algorithm="rl2", env="tabular_mdp",
      env_kwargs={"states": 10, "actions": 5, "episode_length": 10}, episodes=episodes,
      algorithm_kwargs={"hidden": 128, "tasks_per_step": 256, "minibatches": 4,
                        "learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95,
                        "entropy_coef": 0.01, "reward_scale": 0.02},
      meta_steps=3000, log_every=25, checkpoint_every=250, test_tasks=1000,
      run_dir=f"runs/rl2_tabular_mdp_{setting}")
