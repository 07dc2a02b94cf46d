#!/usr/bin/env bash
# The bench on a CUDA machine: every paper net at its paper resolution (fp32, bf16, bf16+channels_last,
# bf16+channels_last+compile), the loader and the framework overhead, in under 8 minutes; one table.
#
#   bench/gpu.sh                        # on the GPU node (after `make setup`); results in bench/results/
#   bench/gpu.sh --device cpu --dry     # the same code path on a CPU at the tiny size (what the tests run)
#
# Extra arguments go to `python -m bench.run` (later ones win: --device, --budget-s, --sections, --out).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || { echo "no $PY: run 'make setup' first" >&2; exit 2; }
if [[ " $* " != *" --dry "* ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "torch sees no CUDA device: bench/gpu.sh needs one (or pass --device cpu --dry)")'
fi
# the run keeps to its own budget (400 s; a compile starts only with 120 s left) and rewrites its JSON and
# Markdown after every measurement; the timeout (8 min) is a backstop that keeps what was measured
WANDB_MODE=disabled HF_HUB_OFFLINE=1 exec timeout 480 "$PY" -m bench.run --size gpu --device cuda "$@"
