"""The ``metajax`` command line.

Examples:
  metajax train configs/maml_omniglot.py:5w1s                 # MAML, Omniglot 5-way 1-shot
  metajax train configs/maml_omniglot.py:5w1s meta_steps=2000 run_dir=runs/short
  metajax train configs/protonet_omniglot.py:20w5s --resume   # continue a stopped run
  metajax evaluate runs/maml_omniglot_5w1s --episodes 600     # test the best checkpoint
  metajax predict runs/protonet_omniglot_5w1s --support my/support --query my/query
  metajax data download omniglot                              # into ~/metajax_data
  metajax data check                                          # what the data folder holds
  metajax bench --quick                                       # benchmarks/run_all.py
  metajax sinusoid                      # MAML on sinusoid regression, paper table
  metajax sinusoid --meta-steps 10000   # a shorter run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_DEBUG = False  # --debug: an error's traceback is shown too
# Commands that turn on JAX's persistent compilation cache in $METAJAX_CACHE_DIR/jax (opt out:
# METAJAX_COMPILATION_CACHE=0; see metajax/train/_compile_cache.py). Not 'bench': the suite
# measures compile time, which a warm cache would hide.
_COMPILE_CACHED = ("train", "evaluate", "predict", "sinusoid")


def _err(message: str) -> None:
  if _DEBUG and sys.exc_info()[0] is not None:
    import traceback

    traceback.print_exc()
  print(message, file=sys.stderr, flush=True)


def _join_processes(args: argparse.Namespace, command: str) -> bool:
  """``jax.distributed.initialize`` from the --coordinator/... flags; False after an error."""
  from metajax.train import distributed

  try:
    distributed.initialize(coordinator=args.coordinator, num_processes=args.num_processes,
                           process_id=args.process_id, auto=args.distributed)
  except (ValueError, RuntimeError) as error:
    _err(f"metajax {command}: {error}")
    return False
  return True


def _train(args: argparse.Namespace) -> int:
  from metajax.train import CheckpointError, NonFiniteError, load_config, train

  if not _join_processes(args, "train"):  # before anything computes with JAX
    return 2
  import jax

  primary = jax.process_index() == 0  # only process 0 talks to the user
  overrides = [*args.overrides, *([f"devices={args.devices}"] if args.devices else [])]
  given = [o for o in args.overrides if o.split("=", 1)[0].strip() == "devices"]
  if args.devices and given:
    _err(f"metajax train: bad config: devices given twice, as --devices {args.devices} and as "
         f"the override {given[-1]!r}; keep one of them.")
    return 2
  try:
    config = load_config(args.config, overrides)
  except (ValueError, TypeError, FileNotFoundError) as error:
    _err(f"metajax train: bad config: {error}")
    return 2
  from metajax.train.config import SinusoidConfig

  if isinstance(config, SinusoidConfig):
    return _sinusoid_config(config, progress=not args.no_progress)
  try:  # devices this machine lacks are a config error, reported before any run folder exists
    _check_devices(config)
  except ValueError as error:
    _err(f"metajax train: bad config: {error}")
    return 2
  from metajax.train.rl import RLConfig

  if isinstance(config, RLConfig):
    return _rl_config(config, args)
  resume = True if args.resume else (False if args.new else None)
  if primary:
    print(f"{config.name}: {config.algorithm} on {config.dataset} {_episodes(config)}, "
          f"{config.meta_steps} meta-steps"
          + ("" if config.time_budget_minutes is None else
             f" or {config.time_budget_minutes:g} minutes, whichever comes first")
          + f", run folder {config.run_dir}", flush=True)
  try:
    result = train(config, resume=resume, progress=not args.no_progress, report=_err)
  except (NonFiniteError, CheckpointError, ValueError, FileNotFoundError) as error:
    _err(f"metajax train: {error}")
    return 1
  if result.stopped_by in ("SIGINT", "SIGTERM", "interrupt"):
    return 130 if result.stopped_by == "SIGINT" else 143
  if not primary:
    return 0
  test = result.test
  inner = "" if test["inner_steps"] is None else f"inner steps {test['inner_steps']}, "
  print(f"best validation accuracy {result.best_val_accuracy:.4f} at step {result.best_step}; "
        f"test accuracy {100 * test['accuracy']:.2f} ± {100 * test['accuracy_ci95']:.2f}% "
        f"({test['episodes']} episodes, {inner}checkpoint of step "
        f"{test['step']}); training took {result.seconds / 60:.1f} min this call; "
        f"results in {result.run_dir}")
  return 0


def _episodes(config) -> str:
  """'5-way 1-shot', or 'trains 60-way 1-shot, tests 5-way 1-shot' when they differ."""
  train = f"{config.ways}-way {config.shots}-shot"
  test = f"{config.eval_ways}-way {config.eval_shots}-shot"
  return train if train == test else f"trains {train}, tests {test}"


def _sinusoid_config(config, *, progress: bool) -> int:
  from metajax.train.sinusoid import run_sinusoid_experiment

  run_sinusoid_experiment(config, progress=progress,
                          report=lambda message: print(message, flush=True))
  print(f"results in {config.run_dir}")
  return 0


def _check_devices(config) -> None:
  """Raises ``ValueError`` for a config's ``devices`` that this machine (or run) lacks."""
  from metajax.train import distributed
  from metajax.train.rl import RLConfig, _training_mesh

  if isinstance(config, RLConfig):
    _training_mesh(config)
  else:
    distributed.device_layout(config.devices, config.mesh)


def _rl_config(config, args: argparse.Namespace) -> int:
  from metajax.train.rl import train_rl

  print(f"{config.name}: {config.algorithm} on {config.env} {config.env_kwargs}, "
        f"{config.meta_steps} {'PPO' if config.algorithm == 'rl2' else 'outer'} steps, "
        f"run folder {config.run_dir}", flush=True)
  try:
    result = train_rl(config, resume=True if args.resume else (False if args.new else None),
                      progress=not args.no_progress, report=_err)
  except ValueError as error:
    _err(f"metajax train: {error}")
    return 1
  if result.stopped_by is not None:
    return 130 if result.stopped_by == "SIGINT" else 143
  test = result.test
  if "adaptation_steps" in test:  # MAML-RL: the return after 0, 1, ... adaptation steps
    returns = ", ".join(f"{k}: {m:.2f} ± {c:.2f}" for k, m, c in zip(
        test["adaptation_steps"], test["mean"], test["ci95"]))
    print(f"test: mean return per episode after k policy-gradient steps (k: mean ± 95% CI) "
          f"{returns} on {test['tasks']} fresh tasks after {result.steps} steps; results in "
          f"{result.run_dir}")
    return 0
  print(f"test: total reward per trial {test['mean']:.3f} ± {test['ci95']:.3f} (greedy actions "
        f"{test['greedy']['mean']:.3f} ± {test['greedy']['ci95']:.3f}) on {test['tasks']} fresh "
        f"tasks after {result.steps} steps; results in {result.run_dir}")
  return 0


def _evaluate(args: argparse.Namespace) -> int:
  from metajax.train import CheckpointError, evaluate_run

  if not _join_processes(args, "evaluate"):  # before anything computes with JAX
    return 2
  import jax

  config_file = Path(args.run_dir) / "config.json"
  if config_file.is_file() and "env" in json.loads(config_file.read_text()):
    return _evaluate_rl(args)
  devices = args.devices
  if devices is not None and devices.strip().isdigit():
    devices = int(devices)  # else 'all', or a value evaluate_run refuses with the rule
  try:
    checkpoint = _checkpoint_arg(args.checkpoint)
    result = evaluate_run(args.run_dir, episodes=args.episodes, checkpoint=checkpoint,
                          steps=args.steps, split=args.split, ways=args.ways,
                          shots=args.shots, queries=args.queries, evaluator=args.evaluator,
                          evaluator_kwargs=_json_object(args.evaluator_kwargs,
                                                        "--evaluator-kwargs"),
                          devices=devices)
  except (CheckpointError, ValueError, FileNotFoundError) as error:
    _err(f"metajax evaluate: {error}")
    return 1
  if jax.process_index() != 0:  # only process 0 talks to the user and writes
    return 0
  print(f"{args.run_dir} step {result['step']} on '{result['split']}', {result['ways']}-way "
        f"{result['shots']}-shot, {result['queries']} "
        f"{'query' if result['queries'] == 1 else 'queries'} per class: accuracy "
        f"{100 * result['accuracy']:.2f} ± {100 * result['accuracy_ci95']:.2f}% "
        f"({result['episodes']} episodes, 95% CI, {result['evaluator']}"
        + ("" if result["devices"] == 1 else f", {result['devices']} devices") + ")")
  if args.json:
    Path(args.json).write_text(json.dumps(result, indent=2))
  return 0


def _step_sizes_arg(text: str) -> tuple[float, ...]:
  """``--step-sizes 0.1,0.05`` -> ``(0.1, 0.05)``; a ValueError naming the flag otherwise."""
  try:
    return tuple(float(v) for v in text.split(","))
  except ValueError:
    raise ValueError(f"--step-sizes {text!r} is not a comma-separated list of numbers; pass one "
                     "step size per adaptation step, e.g. --step-sizes 0.1,0.05,0.05") from None


def _evaluate_rl(args: argparse.Namespace) -> int:
  """``metajax evaluate`` of an RL² or MAML-RL run: its final test again, on fresh tasks."""
  from metajax.train.checkpoint import CheckpointError
  from metajax.train.rl import evaluate_rl_run

  few_shot = [flag for flag, value in (("--split", args.split), ("--ways", args.ways),
                                       ("--shots", args.shots), ("--queries", args.queries),
                                       ("--evaluator", args.evaluator),
                                       ("--evaluator-kwargs", args.evaluator_kwargs),
                                       ("--devices", args.devices)) if value is not None]
  if few_shot:
    _err(f"metajax evaluate: {args.run_dir} is an RL run; {', '.join(few_shot)} apply to "
         "few-shot runs only (RL runs take --tasks, --steps, --step-sizes, --checkpoint)")
    return 1
  try:
    checkpoint = "last" if args.checkpoint in ("best", "last") else _checkpoint_arg(
        args.checkpoint)
    sizes = None if args.step_sizes is None else _step_sizes_arg(args.step_sizes)
    result = evaluate_rl_run(args.run_dir, checkpoint=checkpoint, test_tasks=args.tasks,
                             adapt_steps=args.steps, adapt_step_sizes=sizes)
  except (CheckpointError, ValueError, FileNotFoundError) as error:
    _err(f"metajax evaluate: {error}")
    return 1
  if "adaptation_steps" in result:  # MAML-RL: the return after each adaptation step
    cells = ", ".join(f"{k}: {m:.2f} ± {c:.2f}" for k, m, c in zip(
        result["adaptation_steps"], result["mean"], result["ci95"]))
    print(f"{args.run_dir} step {result['step']}: mean return per episode after k "
          f"policy-gradient steps (k: mean ± 95% CI) {cells} on {result['tasks']} fresh tasks")
  else:
    print(f"{args.run_dir} step {result['step']}: mean total reward per trial "
          f"{result['mean']:.3f} ± {result['ci95']:.3f} (95% CI; greedy actions "
          f"{result['greedy']['mean']:.3f} ± {result['greedy']['ci95']:.3f}) on "
          f"{result['tasks']} fresh tasks")
  if args.json:
    Path(args.json).write_text(json.dumps(result, indent=2))
  return 0


def _predict(args: argparse.Namespace) -> int:
  from metajax.train import CheckpointError, classify_folders

  try:
    checkpoint = _checkpoint_arg(args.checkpoint)
    classes, predictions = classify_folders(args.run_dir, args.support, args.query,
                                            checkpoint=checkpoint, steps=args.steps)
  except (CheckpointError, ValueError, FileNotFoundError) as error:
    _err(f"metajax predict: {error}")
    return 1
  query = Path(args.query)
  for prediction in predictions:
    truth = "" if prediction.label is None else (
        "  (right)" if prediction.label == prediction.predicted else
        f"  (wrong: {prediction.label})")
    print(f"{prediction.path.relative_to(query)}\t{prediction.predicted}{truth}")
  labelled = [p for p in predictions if p.label is not None]
  print(f"{len(predictions)} query images, {len(classes)} classes: {', '.join(classes)}")
  if labelled:
    right = sum(p.label == p.predicted for p in labelled)
    print(f"accuracy {100 * right / len(labelled):.2f}% ({right} of {len(labelled)} images in "
          "sub-folders named like a support class)")
  return 0


def _json_object(text: str | None, flag: str) -> dict | None:
  """``text`` parsed as a JSON object, or ``None``; a ValueError naming ``flag`` otherwise."""
  if text is None:
    return None
  try:
    value = json.loads(text)
  except json.JSONDecodeError as error:
    raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"l2\": 0.1}}'; {text!r} is not "
                     f"JSON ({error})") from None
  if not isinstance(value, dict):
    raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"l2\": 0.1}}', got {text!r}")
  return value


def _checkpoint_arg(value: str) -> str | int:
  if value in ("best", "last") or value.isdigit():
    return value if value in ("best", "last") else int(value)
  raise ValueError(f"--checkpoint {value!r} must be 'best', 'last' or a step number")


def _bench(args: argparse.Namespace) -> int:
  script = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"
  if not script.is_file():
    _err(f"metajax bench: {script} not found; the benchmark suite is not in this checkout "
         "(it runs from a source checkout of metajax, not an installed wheel)")
    return 2
  return subprocess.call([sys.executable, str(script), *args.bench_args], cwd=script.parent.parent)


def _data(args: argparse.Namespace) -> int:
  from metajax import data
  from metajax.train import registry

  if args.action == "download":
    return _download(args)
  if args.action == "convert":
    return _convert(args)
  try:
    root = data.data_dir(args.data_dir)
  except FileNotFoundError as error:
    _err(f"metajax data {args.action}: {error}")
    return 1
  print(f"data folder: {root}\ncache folder: {data.cache_dir()}")
  failures = 0
  # (folder under the data folder, dataset name in the registry)
  checks = [("omniglot", "omniglot"), ("tiny-imagenet", "tiny_imagenet"),
            ("miniimagenet", "mini_imagenet"), ("cifar100", "cifar_fs")]
  for name, dataset in checks:
    if not (root / name).exists():
      print(f"{name}: not found in {root / name}")
      continue
    if args.action == "check":
      files = sorted(p.relative_to(root).as_posix() for p in (root / name).rglob("*")
                     if p.is_file())
      print(f"{name}: {len(files)} files: " + ", ".join(files[:8])
            + (" ..." if len(files) > 8 else ""))
    loader = registry.DATASETS[dataset].loader
    missing, loaded = [], 0
    for split in ("train", "val", "test"):
      try:
        with data.fresh_digests():  # re-hash the archives: a damaged one must not pass
          dataset_split = loader(split, data_dir=root, workers=args.workers)
        loaded += 1
        print(f"  {name}/{split}: {dataset_split.num_classes} classes, images "
              f"{tuple(dataset_split.image_shape)}")
      except FileNotFoundError as error:
        missing.append(f"  {name}/{split}: not usable: {error}")
      except ValueError as error:
        failures += 1
        print(f"  {name}/{split}: PROBLEM: {error}")
    for line in missing:
      print(line)
    # A folder with none of its splits usable (e.g. miniImageNet's split files without the
    # images) is reported, not failed; one with some splits usable and others not is a problem.
    if missing and loaded:
      failures += len(missing)
      print(f"  {name}: PROBLEM: {len(missing)} of 3 splits not usable (above)")
  return 1 if failures else 0


def _convert(args: argparse.Namespace) -> int:
  """``metajax data convert SOURCE``: array_record + manifest per split, for streaming."""
  from metajax.data import _paths, streaming
  from metajax.train import registry

  if args.dataset not in registry.DATASETS:
    _err(f"metajax data convert: unknown source {args.dataset!r}; use one of "
         f"{sorted(registry.DATASETS)}")
    return 2
  spec = registry.DATASETS[args.dataset]
  for split in [s for s in args.splits.split(",") if s]:
    dataset = spec.loader(split, data_dir=args.data_dir)
    target = _paths.cache_dir() / "stream" / args.dataset / split
    streaming.write_source(dataset, target, overwrite=args.overwrite)
    print(f"{args.dataset}/{split}: {dataset.num_classes} classes, "
          f"{sum(dataset.examples_per_class)} images {tuple(dataset.image_shape)} -> {target}")
  return 0


def _download(args: argparse.Namespace) -> int:
  from metajax.data import _paths, download_omniglot

  if args.dataset != "omniglot":
    _err(f"metajax data download: only omniglot can be downloaded, not {args.dataset!r}; the "
         "other datasets' licences need their files fetched by hand (see the README's Data)")
    return 2
  root = Path(args.data_dir).expanduser() if args.data_dir else _paths.default_data_dir()
  options = {}
  if args.base_url:
    options.update(base_url=args.base_url,
                   splits_url=f"{args.base_url.rstrip('/')}/splits/vinyals")
  if args.sha256:
    sums = {}
    for line in Path(args.sha256).read_text().splitlines():
      if line.strip():
        digest, name = line.split(maxsplit=1)
        sums[Path(name.strip().lstrip("*")).name.removesuffix(".zip")] = digest
    options["sha256"] = sums
  print(f"downloading Omniglot into {root / 'omniglot'} ...", flush=True)
  try:
    fetched = download_omniglot(root / "omniglot", **options)
  except (OSError, ValueError) as error:
    _err(f"metajax data download: {error}")
    return 1
  for name, path in fetched.items():
    print(f"  {name}: {path}")
  default = _paths.default_data_dir()
  hint = ("" if root.resolve() == default.resolve()
          else f"; set METAJAX_DATA_DIR={root.resolve()} to use it (the default is {default})")
  print(f"done{hint}")
  return 0


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


def _add_layout_flags(command: argparse.ArgumentParser, what: str, verb: str,
                      key: str) -> None:
  """The devices-and-processes flags that ``train`` and ``evaluate`` share."""
  layout = command.add_argument_group(
      "devices and processes", f"Shard {what} over several devices, and over several "
      "processes (hosts) that all run this same command; see docs/guide/distributed.md.")
  layout.add_argument("--devices", metavar="N|all",
                      help=f"devices to {verb}: a number or 'all' ({key}default: 1, or all "
                           "devices of a multi-process run)")
  layout.add_argument("--coordinator", metavar="HOST:PORT",
                      help="address of process 0 of a multi-process run (jax.distributed)")
  layout.add_argument("--num-processes", type=int, metavar="N", help="processes of the run")
  layout.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")
  layout.add_argument("--distributed", action="store_true",
                      help="join a multi-process run described by the environment (SLURM, Cloud "
                           "TPU, Open MPI, Kubernetes, JAX_COORDINATOR_ADDRESS)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="metajax", description="Functional meta-learning in JAX.",
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument("--debug", action="store_true",
                      help="show the traceback of an error (anywhere on the command line)")
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
             "Ctrl-C or SIGTERM: finish the step, save a checkpoint, exit (rerun to resume).\n"
             "Compiled programs are kept for the next run in $METAJAX_CACHE_DIR/jax (default "
             "~/.cache/metajax/jax; METAJAX_COMPILATION_CACHE=0: off; JAX_COMPILATION_CACHE_DIR: "
             "your own folder).")
  train.add_argument("config", metavar="CONFIG.py[:ARG]", help="the config file")
  train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
  mode = train.add_mutually_exclusive_group()
  mode.add_argument("--resume", action="store_true",
                    help="require a checkpoint to resume from (default: resume if there is one)")
  mode.add_argument("--new", action="store_true",
                    help="require a fresh run folder (fail if it holds checkpoints)")
  train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  _add_layout_flags(train, "the task batch", "train on", "the config key 'devices'; ")
  train.set_defaults(run=_train)

  evaluate = commands.add_parser(
      "evaluate", help="test a run's checkpoint on its test split",
      description="Evaluate a checkpoint of RUN_DIR (written by 'metajax train') on episodes of "
                  "its test split; prints the mean accuracy and its 95% confidence interval. "
                  "For an RL² or MAML-RL run: its final test again on fresh tasks (the mean "
                  "return, after each adaptation step for MAML-RL).")
  evaluate.add_argument("run_dir", metavar="RUN_DIR")
  evaluate.add_argument("--episodes", type=int, default=600, help="test episodes (600)")
  evaluate.add_argument("--checkpoint", default="best",
                        help="'best' (validation accuracy), 'last' or a step number (best; "
                             "RL runs: 'best' is the last)")
  evaluate.add_argument("--steps", type=int, help="test-time inner steps (the run's setting); "
                        "MAML-RL runs: test adaptation steps")
  evaluate.add_argument("--split", help="dataset split (the run's test split)")
  evaluate.add_argument("--ways", type=int, help="test ways (the run's; metric learners only)")
  evaluate.add_argument("--shots", type=int, help="test shots (the run's)")
  evaluate.add_argument("--queries", type=int, help="test queries per class (the run's)")
  evaluate.add_argument("--evaluator", choices=("linear_probe", "baseline", "baseline_plus_plus",
                                                "nearest_centroid"),
                        help="score the run's embedding with this transfer evaluator instead of "
                             "its own learner (metric-learner and pretraining runs)")
  evaluate.add_argument("--evaluator-kwargs", metavar="JSON",
                        help="that evaluator's arguments as a JSON object, e.g. '{\"l2\": 0.1}' "
                             "for the linear probe (a pretraining run's own, else defaults)")
  evaluate.add_argument("--tasks", type=int,
                        help="RL runs: fresh test tasks (the run's test_tasks)")
  evaluate.add_argument("--step-sizes", metavar="A,B,...",
                        help="MAML-RL runs: the size of each test adaptation step (the run's)")
  evaluate.add_argument("--json", help="also write the result to this JSON file")
  _add_layout_flags(evaluate, "each batch of episodes", "evaluate on", "")
  evaluate.set_defaults(run=_evaluate)

  predict = commands.add_parser(
      "predict", help="classify your own images with a trained run",
      description="Adapt RUN_DIR's learner to the support images (one sub-folder per class, "
                  "named after the class) and print the predicted class of every image under "
                  "the query folder. Query images in a sub-folder named like a support class "
                  "count as labelled, and the accuracy over them is printed. Images are "
                  "converted as the run's dataset loader converts its files (size, channels; "
                  "Omniglot: dark ink on white).")
  predict.add_argument("run_dir", metavar="RUN_DIR")
  predict.add_argument("--support", required=True, metavar="DIR",
                       help="one sub-folder of images per class")
  predict.add_argument("--query", required=True, metavar="DIR", help="images to classify")
  predict.add_argument("--checkpoint", default="best",
                       help="'best' (validation accuracy), 'last' or a step number (best)")
  predict.add_argument("--steps", type=int, help="test-time inner steps (the run's setting)")
  predict.set_defaults(run=_predict)

  bench = commands.add_parser(
      "bench", help="run the benchmark suite (benchmarks/run_all.py)",
      description="Run benchmarks/run_all.py of the source checkout; extra arguments are passed "
                  "to it.")
  bench.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="arguments for run_all.py")
  bench.set_defaults(run=_bench)

  data = commands.add_parser(
      "data", help="check, download, prepare or convert the datasets",
      description="check: list what the data folder holds and load every split; download: fetch "
                  "Omniglot (official archives, sha256-checked) and the Vinyals splits; prepare: "
                  "decode the archives into the array cache used by training; convert: write "
                  "SOURCE's splits as array_record files with a manifest of SHA-256 hashes into "
                  "<cache>/stream/SOURCE/SPLIT, for the streaming sampler.")
  data.add_argument("action", choices=("check", "download", "prepare", "convert"))
  data.add_argument("dataset", nargs="?", default="omniglot",
                    help="what to download (omniglot, the default)")
  data.add_argument("--data-dir", help="data folder (default: $METAJAX_DATA_DIR, else "
                                       "~/metajax_data)")
  data.add_argument("--base-url", help="download: a mirror holding <archive>.zip and "
                                       "splits/vinyals/*.txt (default: the official repositories)")
  data.add_argument("--sha256", metavar="SUMS", help="download: a sha256sum listing of the "
                                                     "mirror's zips, trusted instead of the "
                                                     "official digests")
  data.add_argument("--workers", type=int, help="decoding threads (check, prepare)")
  data.add_argument("--splits", default="train,val,test",
                    help="convert: comma-separated splits (default train,val,test)")
  data.add_argument("--overwrite", action="store_true",
                    help="convert: replace an existing converted split")
  data.set_defaults(run=_data)
  return parser


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split()) or type(error).__name__


def _say_library_logs() -> None:
  """Shows the library's messages (e.g. "rebuilding the cache ...") on stderr."""
  import logging

  logger = logging.getLogger("metajax")
  if not logger.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("metajax: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; user errors print one line (``--debug``: the traceback)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  global _DEBUG
  debug = _DEBUG = "--debug" in argv
  argv = [a for a in argv if a != "--debug"]
  if argv[:1] == ["bench"] and argv[1:2] not in (["-h"], ["--help"]):
    # Everything after 'bench' goes to run_all.py verbatim: argparse's REMAINDER drops a leading
    # option ('metajax bench --quick' would be "unrecognized arguments").
    return _bench(argparse.Namespace(bench_args=argv[1:]))
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  if extra:  # overrides may follow flags: metajax train CONFIG --no-progress run_dir=X
    if getattr(args, "command", None) == "train" and all(
        "=" in e and not e.startswith("-") for e in extra):
      args.overrides = [*args.overrides, *extra]
    else:
      parser.parse_args(argv)  # exits with argparse's "unrecognized arguments" message
  _say_library_logs()
  try:
    if args.command in _COMPILE_CACHED:  # a second run loads its programs instead of compiling
      from metajax.train._compile_cache import enable_compilation_cache

      enable_compilation_cache()
    return args.run(args)
  except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError) as error:
    if debug:
      raise
    _err(f"metajax {args.command}: {_one_line(error)} ({type(error).__name__}; rerun with "
         "--debug for the traceback)")
    return 2


if __name__ == "__main__":
  sys.exit(main())
