"""The ``metajax`` command line.

Examples:
  metajax train configs/maml_omniglot.py:5w1s                 # MAML, Omniglot 5-way 1-shot
  metajax train configs/maml_omniglot.py:5w1s meta_steps=2000 run_dir=runs/short
  metajax train configs/protonet_omniglot.py:20w5s --resume   # continue a stopped run
  metajax evaluate runs/maml_omniglot_5w1s --episodes 600     # test the best checkpoint
  metajax data check                                          # what the data folder holds
  metajax bench                                               # benchmarks/run_all.py
  metajax sinusoid                      # MAML on sinusoid regression, paper table
  metajax sinusoid --meta-steps 10000   # a shorter run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def _err(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
  from metajax.train import CheckpointError, NonFiniteError, load_config, train

  try:
    config = load_config(args.config, args.overrides)
  except (ValueError, TypeError, FileNotFoundError) as error:
    _err(f"metajax train: bad config: {error}")
    return 2
  from metajax.train.config import SinusoidConfig

  if isinstance(config, SinusoidConfig):
    return _sinusoid_config(config, progress=not args.no_progress)
  resume = True if args.resume else (False if args.new else None)
  print(f"{config.name}: {config.algorithm} on {config.dataset} {config.ways}-way "
        f"{config.shots}-shot, {config.meta_steps} meta-steps, run folder {config.run_dir}",
        flush=True)
  try:
    result = train(config, resume=resume, progress=not args.no_progress, report=_err)
  except (NonFiniteError, CheckpointError, ValueError, FileNotFoundError) as error:
    _err(f"metajax train: {error}")
    return 1
  if result.stopped_by in ("SIGINT", "SIGTERM", "interrupt"):
    return 130 if result.stopped_by == "SIGINT" else 143
  test = result.test
  inner = "" if test["inner_steps"] is None else f"inner steps {test['inner_steps']}, "
  print(f"best validation accuracy {result.best_val_accuracy:.4f} at step {result.best_step}; "
        f"test accuracy {100 * test['accuracy']:.2f} ± {100 * test['accuracy_ci95']:.2f}% "
        f"({test['episodes']} episodes, {inner}checkpoint of step "
        f"{test['step']}); training took {result.seconds / 60:.1f} min this call; "
        f"results in {result.run_dir}")
  return 0


def _sinusoid_config(config, *, progress: bool) -> int:
  from metajax.train.sinusoid import run_sinusoid_experiment

  run_sinusoid_experiment(config, progress=progress,
                          report=lambda message: print(message, flush=True))
  print(f"results in {config.run_dir}")
  return 0


def _evaluate(args: argparse.Namespace) -> int:
  from metajax.train import CheckpointError, evaluate_run

  checkpoint = args.checkpoint if args.checkpoint in ("best", "last") else int(args.checkpoint)
  try:
    result = evaluate_run(args.run_dir, episodes=args.episodes, checkpoint=checkpoint,
                          steps=args.steps, split=args.split, ways=args.ways,
                          shots=args.shots, queries=args.queries)
  except (CheckpointError, ValueError, FileNotFoundError) as error:
    _err(f"metajax evaluate: {error}")
    return 1
  print(f"{args.run_dir} step {result['step']} on '{result['split']}', {result['ways']}-way "
        f"{result['shots']}-shot, {result['queries']} "
        f"{'query' if result['queries'] == 1 else 'queries'} per class: accuracy "
        f"{100 * result['accuracy']:.2f} ± {100 * result['accuracy_ci95']:.2f}% "
        f"({result['episodes']} episodes, 95% CI)")
  if args.json:
    Path(args.json).write_text(json.dumps(result, indent=2))
  return 0


def _bench(args: argparse.Namespace) -> int:
  script = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"
  if not script.is_file():
    _err(f"metajax bench: {script} not found; the benchmark suite is not in this checkout "
         "(it runs from a source checkout of metajax, not an installed wheel)")
    return 2
  return subprocess.call([sys.executable, str(script), *args.bench_args], cwd=script.parent.parent)


def _data(args: argparse.Namespace) -> int:
  from metajax import data

  if args.action == "download":
    root = Path(args.data_dir or os.environ.get("METAJAX_DATA_DIR") or "data")
    print(f"downloading Omniglot into {root / 'omniglot'} ...", flush=True)
    fetched = data.download_omniglot(root / "omniglot")
    for name, path in fetched.items():
      print(f"  {name}: {path}")
    print(f"done; set METAJAX_DATA_DIR={root.absolute()} if it is not the default folder")
    return 0
  try:
    root = data.data_dir(args.data_dir)
  except FileNotFoundError as error:
    _err(f"metajax data {args.action}: {error}")
    return 1
  print(f"data folder: {root}\ncache folder: {data.cache_dir()}")
  failures = 0
  checks = [
      ("omniglot", ("train", "val", "test"), data.load_omniglot),
      ("tiny-imagenet", ("train", "val", "test"), data.load_tiny_imagenet),
  ]
  for name, splits, loader in checks:
    if not (root / name).exists():
      print(f"{name}: not found in {root / name}")
      continue
    if args.action == "check":
      files = sorted(p.relative_to(root).as_posix() for p in (root / name).rglob("*")
                     if p.is_file())
      print(f"{name}: {len(files)} files: " + ", ".join(files[:8])
            + (" ..." if len(files) > 8 else ""))
    for split in splits:
      try:
        dataset = loader(split, workers=args.workers)
        print(f"  {name}/{split}: {dataset.num_classes} classes, images "
              f"{tuple(dataset.image_shape)}")
      except (FileNotFoundError, ValueError) as error:
        failures += 1
        print(f"  {name}/{split}: PROBLEM: {error}")
  return 1 if failures else 0


def _sinusoid(args: argparse.Namespace) -> int:
  from metajax.train.config import SinusoidConfig, apply_overrides, validate
  from metajax.train.sinusoid import run_sinusoid_experiment, table_to_json

  try:
    config = validate(apply_overrides(SinusoidConfig(
        meta_steps=args.meta_steps, meta_batch=args.meta_batch, inner_lr=args.inner_lr,
        inner_steps=args.inner_steps, learning_rate=args.learning_rate, seed=args.seed,
        test_tasks=args.test_tasks), [f"shots={args.shots}"]))
  except ValueError as error:
    _err(f"metajax sinusoid: {error}")
    return 2
  table = run_sinusoid_experiment(config, progress=not args.no_progress, write=False,
                                  report=lambda message: print(message, flush=True))
  if args.json:
    Path(args.json).write_text(json.dumps(table_to_json(table), indent=2))
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="metajax", description="Functional meta-learning in JAX.",
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

  sinusoid = commands.add_parser(
      "sinusoid", help="meta-train MAML on sinusoid regression and print the paper's table",
      description="Meta-train MAML on sinusoid regression (Finn et al. 2017), one model per K, "
                  "and print the MSE after 0/1/5/10 adaptation steps for K=5 and K=10.")
  sinusoid.add_argument("--meta-steps", type=int, default=70_000, help="outer iterations (70000)")
  sinusoid.add_argument("--meta-batch", type=int, default=25, help="tasks per iteration (25)")
  sinusoid.add_argument("--shots", default="5,10",
                        help="comma-separated K values; one model is meta-trained per K and "
                             "evaluated on new K-shot tasks (5,10)")
  sinusoid.add_argument("--inner-lr", type=float, default=0.01, help="inner step size (0.01)")
  sinusoid.add_argument("--inner-steps", type=int, default=1, help="inner steps in training (1)")
  sinusoid.add_argument("--learning-rate", type=float, default=1e-3, help="Adam step (1e-3)")
  sinusoid.add_argument("--test-tasks", type=int, default=1000, help="new tasks per K (1000)")
  sinusoid.add_argument("--seed", type=int, default=0)
  sinusoid.add_argument("--json", help="also write the table to this JSON file")
  sinusoid.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  sinusoid.set_defaults(run=_sinusoid)

  train = commands.add_parser(
      "train", help="meta-train from a config file (resumes a stopped run)",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Meta-train, validate, checkpoint and test the experiment of CONFIG, a Python "
                  "file whose get_config() returns a metajax.train.Config. 'file.py:arg' calls "
                  "get_config(arg). A run folder that already holds checkpoints is resumed.",
      epilog="overrides: key=value, e.g. meta_steps=2000 learning_rate=3e-4 "
             "algorithm_kwargs.inner_lr=0.1 run_dir=runs/x test_inner_steps=None\n"
             "Ctrl-C or SIGTERM: finish the step, save a checkpoint, exit (rerun to resume).")
  train.add_argument("config", metavar="CONFIG.py[:ARG]", help="the config file")
  train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
  mode = train.add_mutually_exclusive_group()
  mode.add_argument("--resume", action="store_true",
                    help="require a checkpoint to resume from (default: resume if there is one)")
  mode.add_argument("--new", action="store_true",
                    help="require a fresh run folder (fail if it holds checkpoints)")
  train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  train.set_defaults(run=_train)

  evaluate = commands.add_parser(
      "evaluate", help="test a run's checkpoint on its test split",
      description="Evaluate a checkpoint of RUN_DIR (written by 'metajax train') on episodes of "
                  "its test split; prints the mean accuracy and its 95% confidence interval.")
  evaluate.add_argument("run_dir", metavar="RUN_DIR")
  evaluate.add_argument("--episodes", type=int, default=600, help="test episodes (600)")
  evaluate.add_argument("--checkpoint", default="best",
                        help="'best' (validation accuracy), 'last' or a step number (best)")
  evaluate.add_argument("--steps", type=int, help="test-time inner steps (the run's setting)")
  evaluate.add_argument("--split", help="dataset split (the run's test split)")
  evaluate.add_argument("--ways", type=int, help="test ways (the run's; metric learners only)")
  evaluate.add_argument("--shots", type=int, help="test shots (the run's)")
  evaluate.add_argument("--queries", type=int, help="test queries per class (the run's)")
  evaluate.add_argument("--json", help="also write the result to this JSON file")
  evaluate.set_defaults(run=_evaluate)

  bench = commands.add_parser(
      "bench", help="run the benchmark suite (benchmarks/run_all.py)",
      description="Run benchmarks/run_all.py of the source checkout; extra arguments are passed "
                  "to it.")
  bench.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="arguments for run_all.py")
  bench.set_defaults(run=_bench)

  data = commands.add_parser(
      "data", help="check, download or prepare the datasets",
      description="check: list what the data folder holds and load every split; download: fetch "
                  "Omniglot (official archives, sha256-checked) and the Vinyals splits; prepare: "
                  "decode the archives into the array cache used by training.")
  data.add_argument("action", choices=("check", "download", "prepare"))
  data.add_argument("--data-dir", help="data folder (default: $METAJAX_DATA_DIR or ../shared/data;"
                                       " for download: $METAJAX_DATA_DIR or ./data)")
  data.add_argument("--workers", type=int, help="decoding processes (prepare)")
  data.set_defaults(run=_data)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  return args.run(args)


if __name__ == "__main__":
  sys.exit(main())
