"""Meta-Dataset support: masked (padded) episodes, the variable-way/shot sampler, streaming.

Masked episodes: every learner in the contract suite either gives the unpadded episode's loss,
accuracy and meta-gradient on the padded one (``supports_masks``) or refuses it in
``check_task``; padding is never silently trained on.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import classification_tasks, first
from test_contract import ALGORITHMS, build

import metajax
from metajax.algorithms.cavia import cavia_conv4_model
from metajax.core.masks import pad_task
from metajax.models.conv4 import conv4_model


def _shuffled_padding(task: metajax.Task, extra_support: int, extra_query: int,
                      seed: int = 0, *, keep_support_order: bool = False) -> metajax.Task:
  """Pads a task with random examples and interleaves them with the real ones.

  The rows are shuffled; with ``keep_support_order`` the padded support rows go to random
  positions but the real support rows keep their relative order (for order-dependent learners).
  """
  padded = pad_task(task, task.support_x.shape[0] + extra_support,
                    task.query_x.shape[0] + extra_query, key=jax.random.key(seed + 11))
  rng = np.random.default_rng(seed)
  ps, pq = rng.permutation(padded.support_x.shape[0]), rng.permutation(padded.query_x.shape[0])
  if keep_support_order:
    n_real = task.support_x.shape[0]
    real_at = np.sort(rng.choice(ps.size, n_real, replace=False))  # the real rows' positions
    ps[real_at] = np.arange(n_real)
    ps[np.setdiff1d(np.arange(ps.size), real_at)] = n_real + rng.permutation(extra_support)
  return metajax.Task(padded.support_x[ps], padded.support_y[ps], padded.query_x[pq],
                      padded.query_y[pq], padded.support_mask[ps], padded.query_mask[pq])


def _batch(task):
  return jax.tree.map(lambda a: a[None], task)


def _assert_same_results(learner, params, task, padded, *, check_padding_matters=True):
  key, step = jax.random.key(5), jnp.asarray(3)
  unmasked = padded._replace(support_mask=None, query_mask=None)

  @jax.jit
  def results(params, task, padded, unmasked):
    one = lambda t: (learner.task_loss(params, t, key, step),
                     learner.task_grad(params, t, key, step)[0], learner.evaluate(params, t, key))
    unmasked_loss = (learner.task_loss(params, unmasked, key, step)[0]
                     if check_padding_matters else jnp.nan)
    return one(task), one(padded), unmasked_loss

  expected, got, unmasked_loss = results(params, task, padded, unmasked)
  chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-6)
  if check_padding_matters:  # the padding really is there: without its masks the loss changes
    assert not np.allclose(unmasked_loss, expected[0][0])


# Learners whose result depends on the support order: a padded episode keeps the real support
# rows' relative order, and must equal the unpadded episode of the real rows in that order.
SUPPORT_ORDER_MATTERS = {"matching_net_fce"}  # the bidirectional context LSTM


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_masked_episode_matches_unpadded_or_is_refused(name):
  learner, _ = build(name)
  task = first(classification_tasks(batch=1))
  keep_order = name in SUPPORT_ORDER_MATTERS
  padded = _shuffled_padding(task, extra_support=4, extra_query=3, keep_support_order=keep_order)
  if keep_order:  # padding interleaved with the real rows, not only after them
    real = np.asarray(padded.support_mask)
    assert np.any(real[1:] & ~real[:-1])
  if not learner.supports_masks:
    with pytest.raises(ValueError, match="does not support masked"):
      learner.check_task(_batch(padded))
    return
  learner.check_task(_batch(padded))
  params = learner.init()
  # Move away from the initial point so that no gradient is accidentally zero.
  params = jax.tree.map(lambda p: p + 0.05 * jnp.cos(jnp.arange(p.size).reshape(p.shape)),
                        params)
  _assert_same_results(learner, params, task, padded)


def test_full_context_embeddings_depend_on_the_support_order():
  """Why FCE's padded episodes keep the real rows' order: permuting the support set changes the
  loss (the bidirectional LSTM reads it as a sequence, Vinyals et al. 2016, Appendix A), which
  plain Matching Networks (attention over a set) do not notice."""
  task = first(classification_tasks(batch=1))
  order = np.random.default_rng(1).permutation(task.support_x.shape[0])
  permuted = task._replace(support_x=task.support_x[order], support_y=task.support_y[order])
  losses = {}
  for name in ("matching_net_fce", "matching_net"):
    learner, _ = build(name)
    params = learner.init()
    loss = jax.jit(lambda params, t, learner=learner: learner.task_loss(
        params, t, jax.random.key(0), jnp.asarray(0))[0])
    losses[name] = float(loss(params, task)), float(loss(params, permuted))
  fce, plain = losses["matching_net_fce"], losses["matching_net"]
  np.testing.assert_allclose(plain[1], plain[0], rtol=1e-5)
  assert abs(fce[1] - fce[0]) > 1e-3 * abs(fce[0]), fce


@pytest.mark.parametrize("factory,outputs", [
    (lambda m: metajax.protonet(m, ways=3), None),
    (lambda m: metajax.maml(m, inner_lr=0.1, steps=1), 3),  # MAML adapts a 3-way head
    (lambda m: metajax.metaoptnet(m, ways=3, tol=1e-5, max_iters=5000), None),
    # CAVIA's FiLM Conv-4 takes the context as extra channels; its BatchNorm is masked too.
    (lambda m: metajax.cavia(cavia_conv4_model(3, jax.random.key(0), context_dim=2,
                                               input_shape=(8, 4, 1), filters=2, pooled_blocks=1,
                                               conv="xla", conditioning="film"), context_dim=2),
     None),
], ids=["protonet", "maml", "metaoptnet", "cavia"])
def test_masked_batch_norm_statistics_exclude_padding(factory, outputs):
  """Transductive BatchNorm (Conv-4) normalises by the real examples' statistics only."""
  task = first(classification_tasks(batch=1))
  # [n, 4] features -> [n, 8, 4, 1] images (each feature a 2x4 patch).
  images = lambda x: jnp.repeat(jnp.repeat(x, 2, axis=1), 4, axis=1).reshape(-1, 8, 4, 1)
  task = metajax.Task(images(task.support_x), task.support_y, images(task.query_x), task.query_y)
  model = conv4_model(outputs, jax.random.key(0), input_shape=(8, 4, 1), filters=2,
                      pooled_blocks=1, conv="xla")
  learner = factory(model)
  assert learner.supports_masks
  padded = _shuffled_padding(task, extra_support=3, extra_query=2)
  learner.check_task(_batch(padded))
  _assert_same_results(learner, learner.init(), task, padded, check_padding_matters=False)


def test_stateful_model_without_mask_is_refused():
  """A BatchNorm model whose apply takes no mask cannot hide padding: check_task says so."""
  from flax import nnx

  class Net(nnx.Module):
    def __init__(self):
      self.dense = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
      self.norm = nnx.BatchNorm(3, rngs=nnx.Rngs(0))

    def __call__(self, x):
      return self.norm(self.dense(x))

  padded = _batch(_shuffled_padding(first(classification_tasks(batch=1)), 2, 2))
  for learner in (metajax.protonet(metajax.from_nnx(Net()), ways=3),
                  metajax.maml(metajax.from_nnx(Net()), inner_lr=0.1, steps=1)):
    assert not learner.supports_masks
    with pytest.raises(ValueError, match="BatchNorm"):
      learner.check_task(padded)
    assert metajax.protonet(metajax.from_nnx(Net()), ways=3, batch_norm="frozen").supports_masks


# ---------------------------------------------------------------------------------------------
# The Meta-Dataset episode distribution.

from metajax.data import meta_dataset as md  # noqa: E402
from metajax.data import streaming  # noqa: E402
from metajax.data.dataset import from_labels  # noqa: E402
from metajax.data.sampler import episode_sampler  # noqa: E402

COUNTS = np.random.default_rng(0).integers(6, 700, size=64)  # 64 classes, 6..699 images each


def _reference_episode(rng: np.random.RandomState, counts: np.ndarray):
  """The protocol written out from the paper (Triantafillou et al. 2020, Appendix), in numpy."""
  ways = rng.randint(5, min(50, len(counts)) + 1)
  classes = rng.choice(len(counts), ways, replace=False)
  n = counts[classes]
  q = min(10, int((n // 2).min()))
  beta = rng.uniform()
  support = min(int(np.floor(beta * np.minimum(100, n - q) + 1).sum()), 500)
  weights = n * np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=ways))
  shots = np.minimum(np.floor(weights / weights.sum() * (support - ways)).astype(int) + 1, n - q)
  return ways, classes, shots, q


def test_episode_distribution_matches_the_protocol():
  """10,000 episodes: exact per-episode rules, and the distributions of ways, support size,
  shots and queries against an independent numpy implementation of the paper's formulas."""
  from scipy import stats

  episodes = 10_000
  describe = jax.jit(jax.vmap(lambda k: md.describe_episode(k, COUNTS, max_per_class=1)))
  d = jax.device_get(describe(jax.random.split(jax.random.key(0), episodes)))
  ways, shots, queries, classes = d.ways, d.shots, d.queries, d.classes
  real = np.arange(shots.shape[1])[None, :] < ways[:, None]
  sizes = COUNTS[classes]
  smallest = np.where(real, sizes, 10**9).min(axis=1)
  np.testing.assert_array_equal(queries, np.minimum(10, smallest // 2))
  assert ((shots >= 1) == real).all()
  assert (np.where(real, shots <= sizes - queries[:, None], True)).all()
  assert (shots.sum(axis=1) <= 500).all()
  assert all(len(set(c[:w])) == w for c, w in zip(classes, ways))

  rng = np.random.RandomState(1)
  reference = [_reference_episode(rng, COUNTS) for _ in range(episodes)]
  ref_ways = np.array([r[0] for r in reference])
  ref_support = np.array([r[2].sum() for r in reference])
  ref_queries = np.array([r[3] for r in reference])
  ref_max_share = np.array([r[2].max() / r[2].sum() for r in reference])
  # Ways: uniform on {5..50}.
  observed = np.bincount(ways, minlength=51)[5:]
  assert stats.chisquare(observed).pvalue > 1e-3
  support = shots.sum(axis=1)
  max_share = shots.max(axis=1) / support
  for ours, theirs in ((ways, ref_ways), (support, ref_support), (queries, ref_queries),
                       (max_share, ref_max_share)):
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
  # The tests have power: balanced shots (max share 1/ways) would fail the KS test above.
  balanced = 1.0 / ways
  assert stats.ks_2samp(balanced, ref_max_share).pvalue < 1e-6


def _row_coded_dataset(counts, shape=(2, 2, 1), shuffle=True, seed=0):
  """Images whose first two pixels encode their row number; classes interleaved."""
  rng = np.random.default_rng(seed)
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
  if shuffle:
    labels = rng.permutation(labels)
  rows = np.arange(len(labels))
  images = rng.integers(0, 256, (len(labels), *shape)).astype(np.uint8)
  images[:, 0, 0, 0], images[:, 0, 1, 0] = rows // 256, rows % 256
  return from_labels(images, labels, [f"c{c}" for c in range(len(counts))]), labels


def test_sampled_episodes_follow_their_masks_and_labels():
  counts = [7, 30, 12, 50, 9, 25, 40]
  dataset, labels = _row_coded_dataset(counts)
  task = md.meta_dataset_sampler(dataset, batch_size=8).sample(jax.random.key(1))
  assert task.support_x.shape[:2] == (8, 500) and task.query_x.shape[:2] == (8, 7 * 10)
  for b in range(8):
    def rows(x, mask, b=b):
      px = np.rint(np.asarray(x[b, :, 0, :, 0]) * 255).astype(int)
      return (px[:, 0] * 256 + px[:, 1])[np.asarray(mask[b])]
    s_rows, q_rows = rows(task.support_x, task.support_mask), rows(task.query_x, task.query_mask)
    s_y = np.asarray(task.support_y[b])[np.asarray(task.support_mask[b])]
    q_y = np.asarray(task.query_y[b])[np.asarray(task.query_mask[b])]
    assert not set(s_rows) & set(q_rows) and len(set(s_rows)) == len(s_rows)
    ways = s_y.max() + 1
    assert set(q_y) == set(range(ways)) == set(s_y)
    # One source class per episode label, the same in support and query.
    mapping = {y: labels[r] for y, r in zip(s_y, s_rows)}
    assert len(set(mapping.values())) == ways
    assert all(mapping[y] == labels[r] for y, r in zip(np.r_[s_y, q_y], np.r_[s_rows, q_rows]))
    assert np.all(np.bincount(q_y) == np.bincount(q_y)[0])  # balanced queries


# ---------------------------------------------------------------------------------------------
# Streaming backend.

def _same(a, b):
  return jax.tree.all(jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)),
                                   a, b))


def test_streaming_and_in_memory_give_identical_episodes(tmp_path):
  dataset, _ = _row_coded_dataset([7, 30, 12, 50, 9, 25, 40], shape=(3, 2, 1))
  source = streaming.open_source(streaming.write_source(dataset, tmp_path / "src"), verify=True)
  pairs = [(md.meta_dataset_sampler(dataset, batch_size=2),
            streaming.StreamingSampler(source, batch_size=2)),
           (episode_sampler(dataset, ways=5, shots=2, queries=3, batch_size=2),
            streaming.StreamingSampler(source, batch_size=2,
                                       episodes=streaming.FixedShape(5, 2, 3)))]
  for in_memory, streamed in pairs:
    for seed in range(3):
      assert _same(in_memory.sample(jax.random.key(seed)), streamed.sample(jax.random.key(seed)))


def test_streaming_resume_mid_stream_is_bit_identical(tmp_path):
  dataset, _ = _row_coded_dataset([7, 30, 12, 50, 9, 25], shape=(2, 2, 1))
  source = streaming.open_source(streaming.write_source(dataset, tmp_path / "src"))
  sampler = streaming.StreamingSampler(source, batch_size=2)
  key = jax.random.key(7)
  iterator = sampler.iterate(key, num_batches=6)
  head = [next(iterator) for _ in range(3)]
  state = iterator.get_state()
  tail = list(iterator)
  assert len(head) == 3 and len(tail) == 3
  resumed = sampler.iterate(key, num_batches=6)
  resumed.set_state(state)
  assert all(_same(a, b) for a, b in zip(tail, resumed, strict=True))
  restarted = sampler.iterate(key, num_batches=3, start=3)
  assert all(_same(a, b) for a, b in zip(tail, restarted, strict=True))
  # And the streamed batches are the in-memory sampler's batches fold_in(key, step).
  in_memory = md.meta_dataset_sampler(dataset, batch_size=2)
  assert _same(tail[0], in_memory.sample(jax.random.fold_in(key, 3)))


def test_write_source_is_atomic_and_verified(tmp_path):
  dataset, _ = _row_coded_dataset([5, 6, 7, 8, 9])
  target = streaming.write_source(dataset, tmp_path / "src")
  with pytest.raises(FileExistsError, match="overwrite"):
    streaming.write_source(dataset, target)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no temporary left behind
  data = bytearray((target / streaming.RECORDS).read_bytes())
  data[-1] ^= 0xFF
  (target / streaming.RECORDS).write_bytes(bytes(data))
  with pytest.raises(ValueError, match="SHA-256"):
    streaming.open_source(target, verify=True)
  with pytest.raises(FileNotFoundError, match="convert"):
    streaming.open_source(tmp_path / "missing")


def test_multi_source_sampler_draws_sources_with_their_probabilities():
  a, _ = _row_coded_dataset([6, 8, 9, 7, 10], seed=1)
  b, _ = _row_coded_dataset([12, 6, 7, 9, 8, 6], seed=2)
  samplers = {"a": md.meta_dataset_sampler(a, batch_size=1),
              "b": md.meta_dataset_sampler(b, batch_size=1,
                                           protocol=md.Protocol(max_ways=5))}
  multi = md.multi_source_sampler(samplers, {"a": 1.0, "b": 3.0})
  assert multi.probabilities == (0.25, 0.75)
  picks = np.array([multi.source_of(jax.random.key(i)) for i in range(2000)])
  assert abs(picks.mean() - 0.75) < 0.04  # 4.1 standard errors
  with pytest.raises(ValueError, match="task shapes"):
    md.multi_source_sampler({"a": samplers["a"],
                             "c": md.meta_dataset_sampler(_row_coded_dataset(
                                 [6] * 5, shape=(3, 2, 1))[0], batch_size=1)})
  with pytest.raises(ValueError, match="unknown sources"):
    md.multi_source_sampler(samplers, {"z": 1.0})


def test_convert_command_names_the_sources():
  from metajax import cli

  assert cli.main(["data", "convert", "no_such_source"]) == 2


def test_meta_step_refuses_masked_tasks_for_a_learner_without_mask_support():
  """The central guard: even a learner whose own check_task ignores masks never trains on them."""
  import optax

  learner, _ = build("protonet")
  learner = learner._replace(check_task=lambda tasks: None, supports_masks=False,
                             name="custom")
  padded = _batch(_shuffled_padding(first(classification_tasks(batch=1)), 2, 2))
  meta_step = metajax.make_meta_step(learner, optax.sgd(0.1))
  state = metajax.init_meta_state(learner, optax.sgd(0.1))
  with pytest.raises(ValueError, match="custom does not support masked"):
    meta_step(state, padded, jax.random.key(0))
