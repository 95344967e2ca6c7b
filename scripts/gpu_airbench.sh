#!/usr/bin/env bash
# All GPU work of the airbench recipes in one run on a lent machine (JAX with CUDA, no
# TensorFlow): each preset over several seeds, in the order issue 23 ranks them, each
# started only if its estimated time still ends before the deadline. A device returns
# at most 8 files of under 16 MiB, so the results come back as:
#
#   $OUT/results.tgz      per preset <name>/: train.log, summary.json, every seed's config,
#                         history and metrics, the median seed's parity.npz; gpu.txt;
#                         presets.txt (each preset's exit code, or why it was skipped);
#                         and whatever else the caller staged in $STAGE
#                         (scripts/gpu_session.sh puts the serving benchmark there).
#                         Rewritten after each preset: a run cut off keeps what had ended.
#   $OUT/<name>.weights.tgz[.partNN]   the median seed's model.weights.h5, for the
#                         presets in WEIGHTS (those that may ship), in parts of 15 MB.
#
# Then, on a machine with TensorFlow, from the repository root:
#
#   mkdir -p runs/gpu && tar xzf results.tgz -C runs/gpu && cat airbench96.weights.tgz* | tar xz -C runs/gpu
#   python -m training export runs/gpu/airbench96/seed-<median> --out saved_models/cifar10/<next>
#
# Prepared on the CPU machine, in the repository root (both folders are git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree
#   mkdir -p .devdata && cp ../shared/data/cifar10-train-jpeg.tar.gz .devdata/
# and run there with both carried: OUT=$OUT bash scripts/gpu_airbench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
STAGE=${STAGE:-/tmp/gpu-stage}  # what results.tgz holds
# No preset starts unless its estimate ends before this (seconds since the epoch);
# standalone: DEADLINE_S seconds from now.
DEADLINE_AT=${DEADLINE_AT:-$(( $(date +%s) + ${DEADLINE_S:-540} ))}
ONLY=${ONLY:-}  # names of the presets to run, space-separated; empty: all
WEIGHTS=${WEIGHTS:-airbench95 airbench96}  # presets whose median seed's weights come back
EXTRA=${EXTRA:-}  # flags appended to every run (the toy-size test shrinks the runs with them)
mkdir -p "$OUT" "$STAGE"
started=$(date +%s)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if ! python3 -c "import keras" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
DATA=${DATA:-.devdata/cifar10-train-jpeg.tar.gz}
RUNS=${RUNS:-/tmp/gpu-runs}
rm -rf "$RUNS" && mkdir -p "$RUNS"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$STAGE/gpu.txt" 2>/dev/null || echo "no nvidia-smi" > "$STAGE/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" | tee -a "$STAGE/gpu.txt"

pack() {  # atomically: a cut-off tar never replaces the last whole one (1: a log grew while read)
    tar czf "$OUT/results.tgz.tmp" -C "$STAGE" .
    (( $? <= 1 )) && mv -f "$OUT/results.tgz.tmp" "$OUT/results.tgz"
}

# name | estimated seconds on an H200: process start and data, the compile run, the seeds
# (from run1/run2 of docs/gpu-training.md: compile runs of 27-30 s, 1.6 s an airbench94
# seed, 4.2 s an airbench95 one; airbench96 unmeasured: 1.5x airbench95's FLOPs a step
# for 2.5x its steps, about 16 s a seed) | the training flags. Each writes $RUNS/<name>.
presets=(
    "airbench94|70|--preset airbench94 --seeds 0-7"
    "airbench95|80|--preset airbench95 --seeds 0-4"
    "airbench96|150|--preset airbench96 --seeds 0-2"
    "airbench94-fp32|70|--preset airbench94 --no-mixed-precision --seeds 0-4"
    "airbench94-476steps|70|--preset airbench94 --epochs 11.07 --seeds 0-4"
)
for entry in "${presets[@]}"; do
    IFS='|' read -r name estimate flags <<< "$entry"
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
        echo "skipped $name: not in ONLY" | tee -a "$STAGE/presets.txt"
        continue
    fi
    if (( $(date +%s) + estimate > DEADLINE_AT )); then
        echo "skipped $name: its ${estimate} s would end past the deadline" | tee -a "$STAGE/presets.txt"
        continue
    fi
    # shellcheck disable=SC2086
    python3 -m training train $flags $EXTRA --data "$DATA" --out "$RUNS/$name" 2>&1 | grep --line-buffered -v cuda_timer | tee "$RUNS/$name.log"
    echo "$name: rc ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" | tee -a "$STAGE/presets.txt"
    # Small files of every seed into the stage; the median seed's weights apart.
    python3 - "$name" "$RUNS" "$STAGE" "$OUT" "$WEIGHTS" <<'EOF' || echo "packing $name failed" | tee -a "$STAGE/presets.txt"
import json, shutil, sys, tarfile
from pathlib import Path
name, runs, stage, out, weights = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5].split()
root, dest = runs / name, stage / name
dest.mkdir(parents=True, exist_ok=True)
shutil.copy(root.with_suffix(".log"), dest / "train.log")
median = json.loads((root / "summary.json").read_text())["median_seed"]
for path in sorted(root.rglob("*")):
    keep = path.suffix not in (".h5", ".npz") or (path.suffix == ".npz" and path.parent.name == f"seed-{median}")
    if path.is_file() and keep:
        (dest / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / path.relative_to(root))
if name in weights:
    with tarfile.open(out / f"{name}.weights.tgz", "w:gz") as tar:
        tar.add(root / f"seed-{median}" / "model.weights.h5", arcname=f"{name}/seed-{median}/model.weights.h5")
EOF
    if [ -f "$OUT/$name.weights.tgz" ] && [ "$(stat -c %s "$OUT/$name.weights.tgz")" -gt 15000000 ]; then
        split -b 15000000 -d "$OUT/$name.weights.tgz" "$OUT/$name.weights.tgz.part" && rm "$OUT/$name.weights.tgz"
    fi
    pack
done
echo "total $(( $(date +%s) - started )) s"
pack
