"""MAML paper Figure 5 (2D navigation) from finished MAML-RL runs: return against adaptation steps.

Reads the ``results.json`` that ``metajax train configs/maml_rl_navigation.py:<setting>`` writes
at the end of a run (the same fresh goals, keys and test step sizes for every run of the config)
and draws each run's trained initialisation, plus the untrained ("random") one of the first run,
in one plot; prints the markdown table of mean return +- 95% CI.

    python benchmarks/maml_rl_figure5.py runs/maml_rl_navigation_maml \\
        runs/maml_rl_navigation_trpo runs/maml_rl_navigation_pretrained \\
        --plot docs/images/maml_rl_navigation_figure5.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _rows(runs: list[Path]) -> list[tuple[str, list[float], list[float]]]:
  rows, first = [], None
  for run in runs:
    test = json.loads((run / "results.json").read_text())["test"]
    config = json.loads((run / "config.json").read_text())
    kwargs = config["algorithm_kwargs"]
    if kwargs.get("steps", 1) == 0:
      label = f"pretrained on all goals ({test['step']} Adam steps)"
    else:
      outer = "TRPO" if kwargs.get("outer") == "trpo" else "Adam"
      label = f"{config['name']} ({test['step']} {outer} steps)"
    rows.append((label, test["mean"], test["ci95"]))
    if first is None:
      first = test
    elif (first["adaptation_steps"], first.get("step_sizes"), first["tasks"]) != (
        test["adaptation_steps"], test.get("step_sizes"), test["tasks"]):
      raise SystemExit(f"{run} was tested differently from {runs[0]} (steps, step sizes or "
                       "tasks); compare runs of one config")
  rows.append(("random initialisation", first["initial"]["mean"], first["initial"]["ci95"]))
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", type=Path)
  parser.add_argument("--plot", type=Path, default=None, help="write the figure here (PNG)")
  args = parser.parse_args()
  rows = _rows(args.runs)
  steps = len(rows[0][1])
  print("| initialisation | " + " | ".join(str(k) for k in range(steps)) + " |")
  print("|---|" + "---|" * steps)
  for label, mean, ci in rows:
    print(f"| {label} | " + " | ".join(f"{m:.1f} ± {c:.1f}" for m, c in zip(mean, ci)) + " |")
  if args.plot:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, mean, ci in rows:
      ax.errorbar(range(steps), mean, yerr=ci, marker="o", capsize=3, label=label)
    ax.set_xlabel("policy-gradient adaptation steps")
    ax.set_ylabel("mean return per episode (discounted)")
    ax.set_xticks(range(steps))
    ax.set_title("2D navigation, 100 new goals (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    print(f"figure: {args.plot}")


if __name__ == "__main__":
  main()
