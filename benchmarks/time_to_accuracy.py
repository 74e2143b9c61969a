"""Time to accuracy: MAML Omniglot 5w1s in metajax and in PyTorch, same model, data and CPU.

Both sides train the paper's setup (Finn et al. 2017, Sec. 5.2; ``configs/maml_omniglot.py:5w1s``):
Conv-4 with 64 filters and stride-2 convolutions, transductive BatchNorm, 1 inner SGD step with
alpha=0.4 (3 at test), meta-batch 32, K=1 query per class in training, Adam 1e-3, on the Vinyals
split. PyTorch is ``torch.func`` with a loop over tasks (``benchmarks/torch_impl.py``, the fastest
PyTorch variant of this workload in ``run_all.py``), starting from metajax's initial weights.
Both draw their training episodes from the same metajax sampler with the same keys, so the two
runs see the same episodes in the same order; sampling time counts for both.

At each wall-clock mark (minutes of training, evaluation time excluded) the current weights are
tested on the same 600 episodes of the test split (15 queries per class, 3 inner steps) and the
mean accuracy ± 95% CI is reported. The frameworks run one after the other, each with the whole
machine.
Compile time (metajax's first step) and warm-up (PyTorch's) count as training time.
Smoke check on the loaded shared machine (marks 0.2/0.4 min, 50 episodes): after the one step
each side finished, the two test accuracies agree (34.48 vs 34.45%), as the same start should.

  python benchmarks/time_to_accuracy.py --minutes 30            # marks at 10, 20, 30 minutes
  python benchmarks/time_to_accuracy.py --marks 1 2 --episodes 100 --frameworks metajax

Writes a markdown table to stdout and JSON to ``benchmarks/results/time_to_accuracy.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_all import cpu_name  # noqa: E402

WAYS, SHOTS, TRAIN_QUERIES, TEST_QUERIES = 5, 1, 1, 15
META_BATCH, INNER_LR, TRAIN_STEPS, TEST_STEPS, OUTER_LR = 32, 0.4, 1, 3, 1e-3
EVAL_BATCH = 50


def _data():
  import metajax

  train = metajax.data.load_omniglot("train")
  test = metajax.data.load_omniglot("test")
  train_sampler = metajax.data.episode_sampler(train, ways=WAYS, shots=SHOTS,
                                               queries=TRAIN_QUERIES, batch_size=META_BATCH)
  test_sampler = metajax.data.episode_sampler(test, ways=WAYS, shots=SHOTS,
                                              queries=TEST_QUERIES, batch_size=EVAL_BATCH)
  return train_sampler, test_sampler


def _model(seed: int):
  from flax import nnx

  import metajax

  module = metajax.models.Conv4(WAYS, input_shape=(28, 28, 1), filters=64, pooling="stride",
                                rngs=nnx.Rngs(seed))
  return metajax.from_nnx(module)


def _test_batches(test_sampler, episodes: int, seed: int):
  import jax

  n = -(-episodes // EVAL_BATCH)
  return [test_sampler.sample(jax.random.fold_in(jax.random.key(seed + 1), i)) for i in range(n)]


def _ci(accuracies: np.ndarray) -> tuple[float, float]:
  return (100 * float(accuracies.mean()),
          100 * 1.96 * float(accuracies.std(ddof=1)) / np.sqrt(len(accuracies)))


def run_metajax(marks_s, episodes, seed):
  import jax
  import optax

  import metajax

  train_sampler, test_sampler = _data()
  learner = metajax.maml(_model(seed), inner_lr=INNER_LR, steps=TRAIN_STEPS)
  optimizer = optax.adam(OUTER_LR)
  meta_step = metajax.make_meta_step(learner, optimizer)
  state = metajax.init_meta_state(learner, optimizer)
  tests = _test_batches(test_sampler, episodes, seed)
  evaluate = lambda p, t, k: metajax.evaluate_tasks(learner, p, t, k, steps=TEST_STEPS)
  results, trained_s, step = [], 0.0, 0
  for mark in marks_s:
    while trained_s < mark:
      start = time.perf_counter()
      key = jax.random.fold_in(jax.random.key(seed), step)
      state, metrics = meta_step(state, train_sampler.sample(key), key)
      jax.block_until_ready(metrics["loss"])
      trained_s += time.perf_counter() - start
      step += 1
    acc = np.concatenate([np.asarray(evaluate(state.params, t, jax.random.key(0))["accuracy"])
                          for t in tests])[:episodes]
    results.append({"minutes": mark / 60, "steps": step, "accuracy": _ci(acc)})
    print(f"metajax: {mark / 60:.1f} min, {step} meta-steps, test "
          f"{results[-1]['accuracy'][0]:.2f} ± {results[-1]['accuracy'][1]:.2f}%", flush=True)
  return results


def run_torch(marks_s, episodes, seed):
  import jax
  import torch
  import torch.nn.functional as F  # noqa: N812
  import torch_impl
  from torch.func import functional_call, grad

  torch.set_num_threads(os.cpu_count() or 1)
  train_sampler, test_sampler = _data()
  model = _model(seed)
  module = torch_impl.Conv4(WAYS, (28, 28, 1), 64, "stride")
  params = torch_impl.params_from_metajax(module, jax.device_get(model.params))
  params = {k: v.requires_grad_(False) for k, v in params.items()}
  optimizer = torch.optim.Adam(list(params.values()), lr=OUTER_LR)
  tests = _test_batches(test_sampler, episodes, seed)

  def forward(p, x):
    return functional_call(module, p, (x,))

  def adapt(p, sx, sy, steps):
    for _ in range(steps):
      grads = grad(lambda q: F.cross_entropy(forward(q, sx), sy))(p)
      p = {k: p[k] - INNER_LR * grads[k] for k in p}
    return p

  def task_loss(p, sx, sy, qx, qy):
    return F.cross_entropy(forward(adapt(p, sx, sy, TRAIN_STEPS), qx), qy)

  task_grad = grad(task_loss)

  def accuracy(tasks):
    sx, sy, qx, qy = torch_impl.to_torch_tasks(tasks, images=True)
    out = []
    for i in range(sx.shape[0]):
      adapted = adapt(params, sx[i], sy[i], TEST_STEPS)
      with torch.no_grad():
        out.append((forward(adapted, qx[i]).argmax(-1) == qy[i]).float().mean().item())
    return np.asarray(out)

  results, trained_s, step = [], 0.0, 0
  for mark in marks_s:
    while trained_s < mark:
      start = time.perf_counter()
      key = jax.random.fold_in(jax.random.key(seed), step)
      tasks = torch_impl.to_torch_tasks(train_sampler.sample(key), images=True)
      grads = {k: torch.zeros_like(v) for k, v in params.items()}
      for i in range(META_BATCH):
        for k, g in task_grad(params, *(t[i] for t in tasks)).items():
          grads[k] += g / META_BATCH
      for k, v in params.items():
        v.grad = grads[k]
      optimizer.step()
      trained_s += time.perf_counter() - start
      step += 1
    acc = np.concatenate([accuracy(t) for t in tests])[:episodes]
    results.append({"minutes": mark / 60, "steps": step, "accuracy": _ci(acc)})
    print(f"pytorch: {mark / 60:.1f} min, {step} meta-steps, test "
          f"{results[-1]['accuracy'][0]:.2f} ± {results[-1]['accuracy'][1]:.2f}%", flush=True)
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--minutes", type=float, default=30.0,
                      help="training minutes per framework; marks at each third")
  parser.add_argument("--marks", type=float, nargs="*", help="explicit marks in minutes")
  parser.add_argument("--episodes", type=int, default=600, help="test episodes per mark")
  parser.add_argument("--frameworks", nargs="*", default=["metajax", "pytorch"],
                      choices=["metajax", "pytorch"])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default=str(HERE / "results" / "time_to_accuracy.json"))
  args = parser.parse_args()
  marks = args.marks or [args.minutes * i / 3 for i in (1, 2, 3)]
  if any(m <= 0 for m in marks) or marks != sorted(marks):
    parser.error(f"--marks must be increasing and positive, got {marks}")
  if args.episodes < 2:
    parser.error(f"--episodes must be at least 2 for a confidence interval, got {args.episodes}")
  marks_s = [m * 60 for m in marks]
  load = os.getloadavg()[0]
  out = Path(args.json)
  out.parent.mkdir(parents=True, exist_ok=True)

  def save(table):  # after each framework, so a killed run keeps the finished side
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"date": str(datetime.date.today()), "cpu": cpu_name(),
                               "cores": os.cpu_count(), "load_average": load,
                               "command": " ".join(sys.argv), "results": table}, indent=2))
    os.replace(tmp, out)

  table = {}
  for framework in args.frameworks:
    run = run_metajax if framework == "metajax" else run_torch
    table[framework] = run(marks_s, args.episodes, args.seed)
    save(table)
  lines = [f"# {datetime.date.today()}, {os.cpu_count()} cores, load average {load:.1f} at start; "
           f"MAML Omniglot 5w1s, test on {args.episodes} episodes (15 queries, 3 inner steps)",
           "| training minutes | " + " | ".join(f"{f} (meta-steps, accuracy %)"
                                                 for f in table) + " |",
           "|---|" + "---|" * len(table)]
  for i, mark in enumerate(marks):
    cells = [f"{r[i]['steps']}, {r[i]['accuracy'][0]:.2f} ± {r[i]['accuracy'][1]:.2f}"
             for r in table.values()]
    lines.append(f"| {mark:g} | " + " | ".join(cells) + " |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
