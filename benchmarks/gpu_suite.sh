#!/usr/bin/env bash
# The whole benchmark suite on one machine, metajax beside PyTorch, ready for the first GPU.
#
#   bash benchmarks/gpu_suite.sh                      # on a GPU machine: --device cuda
#   bash benchmarks/gpu_suite.sh --device cpu --quick # the same script on a CPU (how it is tested)
#   bash benchmarks/gpu_suite.sh --bf16               # also a second pass in bfloat16
#   bash benchmarks/gpu_suite.sh --workloads omniglot_maml_5w1s sinusoid_maml_1
#
# What it needs and does not find it installs with pip: JAX with its CUDA plugin (jax[cuda12])
# and a CUDA build of PyTorch on --device cuda, the CPU builds on --device cpu, and metajax's own
# dependencies. Where the machine cannot reach a registry, put wheels in a folder and pass
# --wheels DIR (pip then installs from it alone). metajax itself runs from this checkout
# (PYTHONPATH), so nothing of the project needs installing.
#
# Output: benchmarks/results/suite-<device>[-bf16].{json,md}, or under $OUT when it is set (the
# device machines' output folder). The markdown file is the table for benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=()
bf16=0
wheels=""
workloads=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --bf16) bf16=1; shift ;;
    --wheels) wheels="$2"; shift 2 ;;
    --workloads) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do workloads+=("$1"); shift; done ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$device" in cpu|cuda) ;; *) echo "gpu_suite.sh: --device must be cpu or cuda, not '$device'" >&2; exit 2 ;; esac

py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out_dir="${OUT:-benchmarks/results}"
mkdir -p "$out_dir"

# What is missing, as pip requirement strings (one per line).
missing=$("$py" - "$device" <<'PY'
import importlib, sys
device = sys.argv[1]
need = {"flax": "flax>=0.10", "optax": "optax>=0.2.3", "orbax.checkpoint": "orbax-checkpoint",
        "PIL": "pillow", "tqdm": "tqdm", "matplotlib": "matplotlib", "numpy": "numpy"}
for module, requirement in need.items():
  try:
    importlib.import_module(module)
  except ImportError:
    print(requirement)
try:
  import jax
  if device == "cuda" and jax.default_backend() != "gpu":
    print("jax[cuda12]")
except ImportError:
  print("jax[cuda12]" if device == "cuda" else "jax")
try:
  import torch
  if device == "cuda" and not torch.cuda.is_available():
    print("torch")
except ImportError:
  print("torch")
PY
)
if [ -n "$missing" ]; then
  echo "installing: $(echo "$missing" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  if [ -n "$wheels" ]; then
    "$py" -m pip install -q --no-index --find-links "$wheels" $missing
  else
    "$py" -m pip install -q $missing
  fi
fi

"$py" - "$device" <<'PY'
import sys
import jax, torch
device = sys.argv[1]
print(f"jax {jax.__version__} backend {jax.default_backend()} {jax.devices()[0].device_kind}; "
      f"torch {torch.__version__}" + (f" on {torch.cuda.get_device_name()}"
                                      if torch.cuda.is_available() else " (no CUDA)"))
if device == "cuda" and (jax.default_backend() != "gpu" or not torch.cuda.is_available()):
  sys.exit("gpu_suite.sh: --device cuda but JAX or PyTorch sees no GPU (see the line above)")
PY

run() {  # $1: file stem, rest: extra flags
  local stem="$1"; shift
  local args=(--device "$device" "${quick[@]}" --json "$out_dir/$stem.json" --markdown "$out_dir/$stem.md")
  if [ ${#workloads[@]} -gt 0 ]; then args+=(--workloads "${workloads[@]}"); fi
  "$py" benchmarks/run_all.py "${args[@]}" "$@"
}
start=$SECONDS
run "suite-$device"
if [ "$bf16" = 1 ]; then run "suite-$device-bf16" --bf16; fi
echo "gpu_suite.sh: done in $((SECONDS - start)) s; tables in $out_dir/suite-$device*.md"
