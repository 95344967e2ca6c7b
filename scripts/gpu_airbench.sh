#!/usr/bin/env bash
# All GPU work of the airbench recipe in one run on a lent machine (JAX with CUDA, no
# TensorFlow): the faithful preset over 8 seeds, then, time allowing, the variants
# whose results the docs give as reasons for any deviation. Everything it measures and
# the weights of each preset's median seed land in $OUT; the export to a SavedModel
# happens afterwards on a machine with TensorFlow:
#
#   python -m training export runs/gpu/airbench94/seed-<median> --out saved_models/cifar10/<next>
#
# Prepared on the CPU machine, in the repository root (both folders are git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree
#   mkdir -p .devdata && cp ../shared/data/cifar10-train-jpeg.tar.gz .devdata/
# and run there with both carried: bash scripts/gpu_airbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
BUDGET_S=${BUDGET_S:-230}  # start no preset after the first once this many seconds have passed
EXTRA=${EXTRA:-}  # flags appended to every run (the toy-size test shrinks the runs with them)
mkdir -p "$OUT"
started=$(date +%s)
if ! python3 -c "import keras" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
DATA=${DATA:-.devdata/cifar10-train-jpeg.tar.gz}
RUNS=${RUNS:-/tmp/gpu-runs}
rm -rf "$RUNS"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>/dev/null || echo "no nvidia-smi" > "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" | tee -a "$OUT/gpu.txt"

# name, then the training flags; each writes $RUNS/<name>
presets=(
    "airbench94|--preset airbench94 --seeds 0-7"
    "airbench94-fp32|--preset airbench94 --no-mixed-precision --seeds 0-4"
    "airbench95|--preset airbench95 --seeds 0-4"
)
for i in "${!presets[@]}"; do
    entry=${presets[$i]}
    name=${entry%%|*}
    flags=${entry#*|}
    if (( i > 0 && $(date +%s) - started > BUDGET_S )); then
        echo "skipped $name: past the ${BUDGET_S} s budget" | tee -a "$OUT/skipped.txt"
        continue
    fi
    # shellcheck disable=SC2086
    python3 -m training train $flags $EXTRA --data "$DATA" --out "$RUNS/$name" 2>&1 | tee "$OUT/$name.log"
    # The summary and every seed's small files; weights of the median seed only (the
    # files that come back from the device are few and limited in size).
    python3 - "$name" "$OUT" "$RUNS" <<'EOF'
import json, sys, tarfile
from pathlib import Path
name, out = sys.argv[1], Path(sys.argv[2])
root = Path(sys.argv[3]) / name
median = json.loads((root / "summary.json").read_text())["median_seed"]
with tarfile.open(out / f"{name}.tgz", "w:gz") as tar:
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix not in (".h5", ".npz") or path.parent.name == f"seed-{median}"):
            tar.add(path, arcname=f"{name}/{path.relative_to(root)}")
EOF
done
echo "total $(( $(date +%s) - started )) s"
