"""Transfer baseline on Omniglot: pretrain on all base classes, probe each episode.

Chen et al. (ICLR 2019) and Tian et al. (ECCV 2020): train the Conv-4 embedding (64 filters,
2x2 max-pooling) with plain cross-entropy over all 4,112 classes of the Vinyals training split
(characters x 4 rotations); then score each test episode by a classifier fitted to its support
embeddings with the embedding fixed. The classifier is ``algorithm_kwargs.evaluator``:
``"linear_probe"`` (default; L2-regularised logistic regression on normalised embeddings, C=1 as
Tian et al.), ``"baseline"`` (a fine-tuned linear head), ``"baseline_plus_plus"`` (a fine-tuned
cosine head) or ``"nearest_centroid"`` (Meta-Baseline's classifier). Each training step is one
class-balanced minibatch of 128 images (``ways=64`` classes x ``shots + queries = 2`` images,
labelled by global class; see :func:`metajax.data.batch_sampler`); ``test_*`` set the episodes
of validation and test.

Command:   metajax train configs/baseline_omniglot.py:5w1s
           metajax train configs/baseline_omniglot.py:5w1s algorithm_kwargs.evaluator=baseline
           metajax evaluate runs/baseline_omniglot_5w1s --evaluator nearest_centroid --ways 20
           (the same pretrained embedding serves every setting: pretrain once, then evaluate
           with --ways/--shots/--evaluator)
Runtime:   2-core AMD EPYC CPU: the -cpu30 budget's 7,000 pretraining steps (128 images each)
           with 7 validations in 29.2 min (~4.9 steps/s between validations; other jobs ran at
           nice 19 on the same cores); 29.6 min in all with start-up and the 600 test episodes.
Accuracy:  ``metajax train configs/baseline_omniglot.py:5w1s-cpu30`` (2026-11-29, commit
           a89e6ee): linear-probe validation 92.23 / 95.95 / 96.89 / 97.21 / 97.24 / 97.15 /
           97.29 % at steps 1,000 ... 7,000 (100 episodes each); then on the Vinyals test split,
           600 5-way 1-shot episodes, 15 queries per class: **96.99 +- 0.36 %** -- at, not
           above, the 97 % that issue 21 asks for in 30 CPU minutes (the validation curve had
           flattened from step 4,000). The same checkpoint and episodes with the other
           evaluators (``metajax evaluate RUN --evaluator E``): nearest centroid 97.63 +- 0.33 %,
           Baseline++ 97.53 +- 0.33 %. Chen et al. and Tian et al. report no Omniglot 5w1s.
           With the probe's L2 weight chosen on 300 validation episodes (0.1 of 0.1 / 0.3 / 1:
           97.38 / 97.28 / 96.99 % at 5w1s), ``metajax evaluate RUN --evaluator linear_probe
           --evaluator-kwargs '{"l2": 0.1}'`` scores **97.48 +- 0.33 %**. All four evaluators
           at 5w1s / 5w5s / 20w1s / 20w5s, beside ProtoNet and MAML on the same episodes:
           ``benchmarks/transfer_table.py``, table in docs/guide/transfer.md.
"""

from metajax.train.config import Config, parse_setting

SETTINGS = ("5w1s", "5w5s", "20w1s", "20w5s")
CPU30_STEPS = 7_000  # ~4.9 steps/s on the 2-core CPU: ~24 min, plus the validations


def get_config(arg: str | None = "5w1s") -> Config:
  """``arg``: the test setting, one of ``5w1s``, ``5w5s``, ``20w1s``, ``20w5s``, optionally
  with ``-cpu30``: the 30-minute pretraining budget of a 2-core CPU (CPU30_STEPS steps along
  the same cosine, validation every 1,000 steps on 100 episodes, a 30-minute stop as a guard).
  """
  arg = arg or "5w1s"
  setting, cpu30 = arg.removesuffix("-cpu30"), arg.endswith("-cpu30")
  ways, shots = parse_setting(setting, SETTINGS)
  config = Config(
      name=f"baseline_omniglot_{arg}", algorithm="pretrain",
      algorithm_kwargs=dict(evaluator="linear_probe", classifier="linear"),
      model="conv4", model_kwargs=dict(filters=64, pooling="max"),
      dataset="omniglot", ways=64, shots=1, queries=1,
      test_ways=ways, test_shots=shots, test_queries=15,
      meta_batch=1, optimizer="adam", learning_rate=1e-3,
      optimizer_kwargs=dict(schedule="cosine"),
      meta_steps=10_000, eval_every=1_000, eval_episodes=200, test_episodes=600,
      adaptation_steps=0, run_dir=f"runs/baseline_omniglot_{arg}")
  if cpu30:
    config = config.replace(meta_steps=CPU30_STEPS, eval_every=1_000, eval_episodes=100,
                            time_budget_minutes=30.0)
  return config
