"""Multi-task learning on Omniglot alphabets, next to one single-task model per alphabet.

Each of the first ``--alphabets`` alphabets of Lake et al.'s background set is a task: classify
its characters (its own label set, 14-55 classes). The first ``--train-images`` drawings of every
character train, the rest test. ``metajax.multitask`` trains one Conv-4 trunk with one linear
head per alphabet jointly (one compiled step over all tasks, loss = sum of the task losses, or
Kendall et al.'s uncertainty weighting with ``--weighting uncertainty``); the baseline trains a
separate Conv-4 + head on each alphabet for the same number of steps.

Usage:  python benchmarks/multitask_omniglot.py --steps 300 --alphabets 4
Prints per-alphabet test accuracy of both and the wall time of each (state the machine's load).

Measured: only a smoke run so far (2026-11-29, shared 2-core CPU at load average ~17, commit
8f4dd65): ``--steps 40 --alphabets 2 --batch 16 --filters 16`` gave 13.0 / 10.3 % multi-task vs
22.0 / 11.7 % single-task (Alphabet_of_the_Magi, 20 classes / Anglo-Saxon_Futhorc, 29); 40
steps leave every model far from trained, so this checks the plumbing, not the comparison.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import metajax
from metajax.algorithms import init_multitask_state, multitask_step
from metajax.data import load_omniglot


def alphabet_tasks(count: int, train_images: int):
  data = load_omniglot("background")
  names = sorted({name.split("/")[0] for name in data.class_names})[:count]
  tasks = {}
  for alphabet in names:
    classes = [i for i, n in enumerate(data.class_names) if n.split("/")[0] == alphabet]
    images = data.images[classes].astype(np.float32) / 255.0  # [C, 20, 28, 28, 1]
    labels = np.broadcast_to(np.arange(len(classes))[:, None], images.shape[:2])
    split = lambda a, lo, hi: a[:, lo:hi].reshape(-1, *a.shape[2:])
    key = alphabet.replace("/", "_")
    tasks[key] = {"train": (split(images, 0, train_images), split(labels, 0, train_images)),
                  "test": (split(images, train_images, 20), split(labels, train_images, 20)),
                  "classes": len(classes)}
  return tasks


def heads_for(tasks, features, key):
  heads = {}
  for i, (name, task) in enumerate(tasks.items()):
    w = jax.random.normal(jax.random.fold_in(key, i), (features, task["classes"])) * 0.01
    heads[name] = metajax.from_function(lambda p, x: x @ p["w"] + p["b"],
                                        {"w": w, "b": jnp.zeros(task["classes"])})
  return heads


def sample(tasks, names, key, batch):
  out = {}
  for i, name in enumerate(names):
    x, y = tasks[name]["train"]
    rows = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, len(x))
    out[name] = (jnp.asarray(x[np.asarray(rows)]), jnp.asarray(y[np.asarray(rows)], jnp.int32))
  return out


def train(tasks, names, args, weighting="sum"):
  key = jax.random.key(args.seed)
  trunk = metajax.models.conv4_model(None, key, filters=args.filters)
  learner = metajax.multitask(trunk, heads={n: h for n, h in heads_for(tasks, args.filters,
                                                                         key).items()
                                            if n in names}, weighting=weighting)
  optimizer = optax.adam(args.lr)
  step = multitask_step(learner, optimizer)
  state = init_multitask_state(learner, optimizer)
  began = time.perf_counter()
  for s in range(args.steps):
    state, metrics = step(state, sample(tasks, names, jax.random.fold_in(key, s), args.batch))
  jax.block_until_ready(state.params)
  seconds = time.perf_counter() - began
  accuracy = {}
  for name in names:
    x, y = tasks[name]["test"]
    logits = jax.jit(learner.predict, static_argnums=2)(state.params, jnp.asarray(x), name)
    accuracy[name] = float(np.mean(np.argmax(logits, -1) == y))
  return accuracy, seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--alphabets", type=int, default=4)
  parser.add_argument("--train-images", type=int, default=15)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch", type=int, default=32, help="images per task per step")
  parser.add_argument("--filters", type=int, default=32)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--weighting", default="sum", choices=("sum", "uncertainty"))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", help="write the results here")
  args = parser.parse_args()
  tasks = alphabet_tasks(args.alphabets, args.train_images)
  names = list(tasks)
  joint, joint_seconds = train(tasks, names, args, args.weighting)
  single, single_seconds = {}, 0.0
  for name in names:
    accuracy, seconds = train(tasks, [name], args)
    single.update(accuracy)
    single_seconds += seconds
  print(f"{'alphabet':40s} {'classes':>7s} {'multi-task':>10s} {'single-task':>11s}")
  for name in names:
    print(f"{name:40s} {tasks[name]['classes']:7d} {100 * joint[name]:9.2f}% "
          f"{100 * single[name]:10.2f}%")
  print(f"{'mean':40s} {'':7s} {100 * np.mean(list(joint.values())):9.2f}% "
        f"{100 * np.mean(list(single.values())):10.2f}%")
  print(f"training time: multi-task {joint_seconds:.1f} s (one model), single-task "
        f"{single_seconds:.1f} s ({len(names)} models), {args.steps} steps each")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"multitask": joint, "single_task": single, "args": vars(args),
                 "seconds": {"multitask": joint_seconds, "single_task": single_seconds}}, f,
                indent=2)


if __name__ == "__main__":
  main()
