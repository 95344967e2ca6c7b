#!/usr/bin/env bash
# The GPU serving benchmark in one run (issue 14, part 3): the service with the jax
# runtime on the shipped default model, load from the same machine, one markdown table.
#
#   bash scripts/gpu_bench.sh OUT_DIR [extra scripts/bench_matrix.py arguments]
#
# Cells (scripts/bench_matrix.py --plan gpu, 6 s each after 1 s of warm-up, about
# 4 minutes in all with the four server start-ups): single-image /predict at
# concurrency 1, 64, 256 and 1024 and 64-image requests at concurrency 16, for one
# process and for N front processes + the model process (N = min(8, cores/2)), each
# with batching on (max batch 256); batching off (max batch 1) at concurrency 256 for
# both designs; the raw jitted model at batch 256 as the ceiling. p50 and p99 for
# every cell. Writes OUT_DIR/table.md, OUT_DIR/results.json and OUT_DIR/logs/.
#
# The GPU hosts have Python 3.12, JAX with CUDA, numpy, pillow, httpx, uvloop,
# prometheus-client, h11, anyio and pyyaml, but not the service's other dependencies
# nor Keras. On a machine with the package index, fetch them once (the versions the
# tests ran with) into the repository's ignored .whl folder:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --abi cp312 --abi abi3 --abi none \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform any -d /work/main/.whl \
#     fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5 \
#     pydantic-settings==2.16.3 python-multipart==0.0.34 uvicorn==0.54.0 click==8.5.1 \
#     httptools==0.9.0 python-dotenv==1.2.4 annotated-types==0.8.0 annotated-doc==0.0.7 \
#     typing-inspection==0.4.5 typing-extensions==4.16.0 opentelemetry-api==1.45.2 \
#     simplejpeg==1.9.0 keras==3.15.1 namex==0.1.0 optree==0.20.0 absl-py==2.5.1 \
#     h5py==3.14.0 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 \
#     packaging==26.4 fastapi-offline==1.7.7
#
# (fastapi imports opentelemetry-api and uvicorn imports click; Keras imports absl,
# h5py, rich and packaging; the app serves /docs from fastapi-offline's files; 27 wheels.) On the GPU host, from the repository
# root with .whl carried along:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#
# This script runs that line itself when .whl/ holds wheels and nothing is installed
# at /tmp/site yet. It never imports TensorFlow (there is none there).
set -euo pipefail

OUT=${1:?usage: bash scripts/gpu_bench.sh OUT_DIR [bench_matrix.py arguments]}
shift
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null && [ ! -d /tmp/site/fastapi ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
if [ -d /tmp/site ]; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # c=1024 needs more than 1024 descriptors

# Fail in seconds, not after a server start, when something is missing.
$PY - <<'EOF'
import importlib.util, os, sys
needed = ["fastapi", "fastapi_offline", "starlette", "pydantic", "pydantic_settings", "multipart", "uvicorn", "click", "httptools",
          "uvloop", "prometheus_client", "PIL", "simplejpeg", "numpy", "keras", "optree", "namex", "h5py", "absl",
          "rich", "jax", "opentelemetry"]
missing = [m for m in needed if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules: {', '.join(missing)} (see the pip download line at the top of scripts/gpu_bench.sh)")
import jax
print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, jax {jax.__version__}, devices {jax.devices()}", flush=True)
EOF

mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>/dev/null || true
exec $PY scripts/bench_matrix.py --plan gpu --out "$OUT" "$@"
