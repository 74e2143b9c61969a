"""Meta-learners and transfer baselines scored on the same test episodes: one table.

Issue 21's comparison (Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019; Tian
et al., "Rethinking Few-Shot Image Classification", ECCV 2020): trained runs of any learners --
ProtoNet, MAML, pretraining on the base classes -- each scored on the same 600 test episodes of
every setting it can take, and the pretrained embedding scored with every transfer evaluator
(Baseline, Baseline++, linear probe, nearest centroid). Every cell is
``metajax.train.evaluate_run`` with the run's seed and 15 queries per class; the episodes of a
setting are the same for every row (a function of the seed, the split and the episode shape),
and the script checks it: it stops if two cells of one setting report different
``episodes_digest`` values.

Which cells a run fills: a metric learner or a pretraining run every setting of its dataset
(its embedding takes any ways and shots); a gradient-based learner (MAML) only the settings with
its head's ways, at any shots (a 5-way 1-shot MAML model also scores 5w5s, as its row says).

Command:   python benchmarks/transfer_table.py RUN_DIR [RUN_DIR ...] [--episodes 600]
               [--probe-l2 L2] [--json PATH] [--markdown PATH]
           python benchmarks/transfer_table.py --records A.json B.json --markdown PATH
           (one table from the cells of earlier calls, e.g. one call per dataset run side by
           side)
Runtime:   one evaluation per cell; on the 2-core CPU about 0.5-3 minutes per cell (the
           linear probe and Baseline fit a head per episode), ~40 minutes for the 36 cells of
           the runs named in docs/guide/transfer.md.
Accuracy:  the table in docs/guide/transfer.md (runs, budgets and date there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from metajax.train.config import parse_setting

SETTINGS = {"omniglot": ("5w1s", "5w5s", "20w1s", "20w5s"), "tiny_imagenet": ("5w1s", "5w5s")}
EVALUATORS = ("baseline", "baseline_plus_plus", "linear_probe", "nearest_centroid")
LABELS = {"baseline": "Baseline (pretrain + linear head)",
          "baseline_plus_plus": "Baseline++ (pretrain + cosine head)",
          "linear_probe": "linear probe (pretrain + logistic regression)",
          "nearest_centroid": "nearest centroid (pretrain)"}
QUERIES = 15


def cells_of(run_dir: Path) -> list[tuple[str, str | None, str]]:
  """``(row label, evaluator or None, setting)`` for every cell ``run_dir`` fills."""
  from metajax.train import registry
  from metajax.train.runs import read_run_config

  config = read_run_config(run_dir)
  if config.dataset not in SETTINGS:
    raise SystemExit(f"{run_dir}: dataset {config.dataset!r} has no settings here; the table "
                     f"covers {sorted(SETTINGS)}")
  fixed_ways = registry.ALGORITHMS[config.algorithm].gradient_based or config.algorithm == "snail"
  settings = [s for s in SETTINGS[config.dataset]
              if not fixed_ways or parse_setting(s, SETTINGS[config.dataset])[0] == config.ways]
  if config.algorithm == "pretrain":
    rows = [(LABELS[e], e) for e in EVALUATORS]
  else:
    rows = [(config.algorithm, None)]
  return [(label, evaluator, f"{config.dataset} {s}") for label, evaluator in rows
          for s in settings]


def _training(run_dir: Path) -> str:
  summary = json.loads((run_dir / "summary.json").read_text())
  minutes = summary.get("train_seconds_this_call", float("nan")) / 60
  return f"{run_dir.name}: {summary['step']:,} steps in {minutes:.1f} min"


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("runs", nargs="*", type=Path, help="run folders written by metajax train")
  parser.add_argument("--episodes", type=int, default=600)
  parser.add_argument("--probe-l2", type=float,
                      help="the linear probe's L2 weight (default: the run's, else 1.0); choose "
                           "it on validation episodes (metajax evaluate --split val)")
  parser.add_argument("--records", nargs="+", type=Path, default=[],
                      help="also put the cells of these earlier --json files in the table")
  parser.add_argument("--json", type=Path, help="write every cell's record here")
  parser.add_argument("--markdown", type=Path, help="write the table here")
  args = parser.parse_args(argv)
  from metajax.train import evaluate_run

  records = [r for path in args.records for r in json.loads(path.read_text())]
  plan: dict[tuple[str, str], tuple[Path, str | None]] = {}
  for run_dir in args.runs:
    for label, evaluator, setting in cells_of(run_dir):
      if (label, setting) in plan:
        raise SystemExit(f"two runs fill the cell {label!r} / {setting}: "
                         f"{plan[label, setting][0]} and {run_dir}; pass one of them")
      plan[label, setting] = (run_dir, evaluator)
  for (label, setting), (run_dir, evaluator) in plan.items():
    dataset, name = setting.split()
    ways, shots = parse_setting(name, SETTINGS[dataset])
    kwargs = ({"l2": args.probe_l2} if evaluator == "linear_probe" and args.probe_l2 is not None
              else None)
    start = time.perf_counter()
    record = evaluate_run(run_dir, episodes=args.episodes, ways=ways, shots=shots,
                          queries=QUERIES, evaluator=evaluator, evaluator_kwargs=kwargs)
    if kwargs:
      label = f"{label}, l2 = {args.probe_l2:g}"
    record.update(row=label, setting=setting, run=str(run_dir), training=_training(run_dir),
                  eval_seconds=time.perf_counter() - start)
    records.append(record)
    print(f"{label:48s} {setting:20s} {100 * record['accuracy']:6.2f} +- "
          f"{100 * record['accuracy_ci95']:.2f} %  ({record['eval_seconds']:.0f} s, episodes "
          f"{record['episodes_digest']})", flush=True)
  digests: dict[str, set[str]] = {}
  for record in records:
    digests.setdefault(record["setting"], set()).add(record["episodes_digest"])
  mixed = {s: d for s, d in digests.items() if len(d) > 1}
  if mixed:
    raise SystemExit(f"cells of one setting scored different episodes: {mixed}; the runs must "
                     "share their seed and their dataset's options")
  table = markdown(records, args.episodes)
  print(table)
  if args.json:
    args.json.write_text(json.dumps(records, indent=1) + "\n")
  if args.markdown:
    args.markdown.write_text(table)
  return {"records": records, "table": table}


def markdown(records: list[dict], episodes: int) -> str:
  """One row per learner, one column per setting; a last column with each run's training."""
  settings = [f"{d} {s}" for d, names in SETTINGS.items() for s in names
              if any(r["setting"] == f"{d} {s}" for r in records)]
  rows = list(dict.fromkeys(r["row"] for r in records))
  cell = {(r["row"], r["setting"]): r for r in records}
  lines = [f"| learner | {' | '.join(settings)} | training |",
           "|---" * (len(settings) + 2) + "|"]
  for row in rows:
    values = []
    for setting in settings:
      r = cell.get((row, setting))
      values.append("" if r is None else
                    f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_ci95']:.2f}")
    training = "; ".join(dict.fromkeys(r["training"] for r in records if r["row"] == row))
    lines.append(f"| {row} | {' | '.join(values)} | {training} |")
  lines.append(f"\n{episodes} test episodes per cell, 15 queries per class, the same episodes in "
               "every cell of a column (checked by their digest).")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
