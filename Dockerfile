# The CIFAR-10 service: one model and one batch queue per container (fed by one
# process, or by CIFAR10_WORKERS front processes); scale with replicas. Build:
#   docker build -t cifar10-service .                                  # CPU, python:3.11-slim, the int8 OpenVINO IR
#   docker build --build-arg VARIANT=gpu --build-arg RUNTIME= -t cifar10-service:gpu .   # TensorFlow with CUDA
#   docker build --build-arg VARIANT=gpu-jax --build-arg RUNTIME=jax --build-arg GRPC_PORT= -t cifar10-service:gpu-jax .   # JAX with CUDA, no TensorFlow, no gRPC
#   docker build --build-arg BASE_IMAGE=cifar10-base:bookworm ...      # air-gapped, see docker/base
ARG BASE_IMAGE=python:3.11-slim

# --- dependencies: a layer of their own, from the variant's lock file -----------------
# requirements/serve-<variant>.lock pins every package (`make lock` writes them from
# pyproject.toml, resolved for Linux x86_64 and Python 3.11). COPY's cache key is the
# file's content: only a new lock reinstalls TensorFlow. --no-deps and pip check: what
# the lock lists, all of it, and nothing else.
FROM ${BASE_IMAGE} AS deps
ARG VARIANT=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=180
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/serve-${VARIANT}.lock /tmp/requirements.lock
# Where the lock runs tensorflow-cpu, a metadata-only `tensorflow` says that it provides
# what tensorflow-serving-api asks for (DEVELOPERS.md, "TensorFlow Serving's stubs").
COPY packaging/tensorflow-cpu-alias/pyproject.toml /tmp/tensorflow-cpu-alias/
RUN pip install --no-deps -r /tmp/requirements.lock \
    && if grep -q '^tensorflow-cpu==' /tmp/requirements.lock; then \
        pip install --no-deps --no-build-isolation /tmp/tensorflow-cpu-alias; fi \
    && pip check

# --- the project itself: the service and the serving half of model/ ------------------
# Not training/, and not model/builders/ or model/reference.py: the service loads
# exported models and never builds one (tests/app/test_serving_imports.py checks
# that it imports nothing else from model/).
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model/__init__.py model/contract.py model/classes.py model/layers.py model/telemetry.py model/
COPY app/ app/
RUN pip install --no-deps . && rm -rf /src

# --- the service: the same base, the virtual environment and the default model -----
FROM ${BASE_IMAGE} AS service
# The service's settings default in app/settings.py; the image sets only those it must
# change (tests/test_deployment_config.py fails on a copy of a default):
# - CIFAR10_RUNTIME: openvino, the int8 IR beside each SavedModel, for the CPU image
#   (docs/serving.md: on CPUs it answers several times the requests of TensorFlow for
#   0.1-0.2 point of accuracy); the gpu variant builds with RUNTIME= (empty: the service's
#   default, tensorflow), the gpu-jax variant with RUNTIME=jax (it has no TensorFlow);
# - CIFAR10_HOST: cifar10-serve listens on 127.0.0.1 by default, and a container
#   must take connections from outside itself (the port stays the default, 8000);
# - CIFAR10_MODEL_DIR: the model baked in below, not a checkout's saved_models/cifar10;
# - CIFAR10_GRPC_PORT: TF Serving's gRPC API on TF Serving's port, 8500 (the service
#   leaves it off by default), where the variant can serve it: the cpu and gpu variants
#   have TensorFlow, which TF Serving's stubs import. gpu-jax has none: build it with
#   GRPC_PORT empty, and the image sets no port and exposes none (docs/protocols.md).
#   `cifar10-serve --workers N` (N > 1) serves HTTP only: set CIFAR10_GRPC_PORT empty there.
ARG RUNTIME=openvino
ARG GRPC_PORT=8500
ENV CIFAR10_RUNTIME=${RUNTIME} \
    CIFAR10_HOST=0.0.0.0 \
    CIFAR10_GRPC_PORT=${GRPC_PORT} \
    CIFAR10_MODEL_DIR=/models/cifar10 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=2
COPY --from=build /opt/venv /opt/venv
# The shipped default model; mount another read-only and point CIFAR10_MODEL_DIR at it.
COPY saved_models/cifar10/ /models/cifar10/
WORKDIR /srv
# A numeric, non-root user: nothing in the image needs root, and no passwd entry is needed.
USER 10001:10001
# HTTP: cifar10-serve's default port (app/__main__.py; CIFAR10_PORT changes it). gRPC:
# CIFAR10_GRPC_PORT's (nothing where GRPC_PORT is empty).
EXPOSE 8000 ${GRPC_PORT}
# The start period covers TensorFlow's import, the model load and the warm-up.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "app.healthcheck"]
CMD ["cifar10-serve"]
