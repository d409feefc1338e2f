#!/usr/bin/env bash
# Every CUDA path of surgenet on a fresh GPU machine, in under 6 minutes: one JSON and one log in OUT.
#
#   bash benchmarks/gpu_check.sh OUT
#
# With CUDA it first installs this checkout over the packages already there, without the network
# (pip install --no-deps -e .), then runs benchmarks/gpu_check.py (its docstring lists the parts).
# Without CUDA nothing is installed and every part says in one line that it skips and why.
# PYTHON picks the interpreter (default python3); GPU_CHECK_BUDGET_S the seconds of the parts (330).
set -uo pipefail
if [ "$#" -ne 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUT (a folder for gpu_check.json and gpu_check.log)" >&2
    exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
if [ -e "$out" ] && [ ! -d "$out" ]; then
    echo "gpu_check: $out is a file; pass a folder to write into" >&2
    exit 2
fi
mkdir -p "$out" || exit 2
if "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: install: pip install --no-deps -e $root (over the preinstalled packages, no network)"
    "$python" -m pip install -q --no-deps --no-build-isolation --no-index -e "$root" >"$out/install.log" 2>&1 \
        || { echo "gpu_check: install: failed (see $out/install.log); running from the tree"; export PYTHONPATH="$root:$root/export"; }
else
    echo "gpu_check: install: skipped: no CUDA here (torch.cuda.is_available() is False), nothing to check on this machine"
    export PYTHONPATH="$root:$root/export${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$python" "$root/benchmarks/gpu_check.py" "$out" --budget-s "${GPU_CHECK_BUDGET_S:-330}"
