"""RL² on Bernoulli bandits (Duan et al., 2016, Section 3.1 / Table 1).

k arms with means ~ U[0, 1], n pulls per trial; a GRU policy sees (observation, previous action,
reward, done) and keeps its memory through the trial; PPO with GAE trains it. The test scores
the total reward per trial on 1,000 fresh tasks (mean +- 95% CI); compare with the baselines of
``benchmarks/rl2_bandits.py`` (random, UCB1, Thompson sampling, exact Bayes-optimal DP).

Command:   metajax train configs/rl2_bandits.py:k5n10 [meta_steps=2000]
Settings:  k5n10, k10n10, k5n100, k10n100, k50n100 (RL² Table 1 rows; n=500 is left out).
Runtime:   k5n10 compiles in ~30 s and then runs ~100-300 PPO steps/s on a loaded 2-core CPU
           (128 trials of 10 pulls a step); k=*, n=100 needs far longer training than we ran.
Result:    k5n10 with these settings, trained 2,470 steps (3 min, load average 19) by
           benchmarks/rl2_bandits.py, on the same 2,000 fresh tasks (mean +- 95% CI):
           RL² 6.60 +- 0.10, Bayes-optimal (exact DP) 6.68 +- 0.10 (expectation 6.660),
           Thompson 5.80 +- 0.09, UCB1 5.69 +- 0.09, random 4.96 +- 0.09
           (benchmarks/results/rl2_bandits_k5n10.json). n=100 not measured yet.
"""

from metajax.train.rl import RLConfig

SETTINGS = ("k5n10", "k10n10", "k5n100", "k10n100", "k50n100")


def get_config(setting: str = "k5n10") -> RLConfig:
  """GRU 256 as the paper for n=100, 64 for n=10; PPO (not the paper's TRPO), gamma=1."""
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r} is not one of {list(SETTINGS)}")
  arms, pulls = (int(x) for x in setting[1:].split("n"))
  hidden = 64 if pulls <= 10 else 256
  return RLConfig(
      name=f"rl2_bandits_{setting}", algorithm="rl2", env="bernoulli_bandit",
      env_kwargs={"arms": arms, "pulls": pulls}, episodes=pulls,
      algorithm_kwargs={"hidden": hidden, "tasks_per_step": 128, "minibatches": 4,
                        "learning_rate": 1e-3, "gamma": 1.0, "gae_lambda": 0.3,
                        "entropy_coef": 0.01},
      meta_steps=3000 if pulls <= 10 else 20000, log_every=50, checkpoint_every=500,
      test_tasks=1000, run_dir=f"runs/rl2_bandits_{setting}")
