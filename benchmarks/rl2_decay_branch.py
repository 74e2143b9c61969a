"""Branches a constant-rate RL² run into a run that decays its learning rate from a checkpoint.

A thin command line over :func:`metajax.train.branch_rl_run` (see its docstring): the new run
folder starts at the source run's checkpoint ``--step`` and ``metajax train`` resumes it there,
ending where a run of the decaying config from step 0 would (bit for bit).

    python benchmarks/rl2_decay_branch.py --from runs/rl2_bandits_k10n100_constant \\
        --step 6000 --config configs/rl2_bandits.py:k10n100 run_dir=runs/rl2_bandits_k10n100
    metajax train configs/rl2_bandits.py:k10n100 run_dir=runs/rl2_bandits_k10n100

Trailing ``key=value`` arguments override ``--config`` as in ``metajax train``; set the new
folder with ``run_dir=``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from metajax.train import CheckpointError, branch_rl_run, load_config


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--from", dest="source", required=True, help="the constant-rate run")
  parser.add_argument("--step", type=int, required=True, help="its checkpoint to branch at")
  parser.add_argument("--config", required=True, help="the decaying config, file.py:setting")
  parser.add_argument("overrides", nargs="*",
                      help="key=value overrides of --config, run_dir= the new folder")
  args = parser.parse_args(argv)
  try:
    config = load_config(args.config, args.overrides)
    target = branch_rl_run(args.source, args.step, config)
  except (ValueError, TypeError, FileNotFoundError, CheckpointError) as error:
    sys.exit(f"rl2_decay_branch: {error}")
  command = shlex.join(["metajax", "train", args.config, *args.overrides])
  print(f"{target}: step {args.step} of {args.source}; resume with `{command}`")


if __name__ == "__main__":
  main()
