# Two commands on a fresh machine: `make serve` and `make test`. Both create the
# virtual environment on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install lock system-packages serve test test-reliability test-docker lint bench clean
# The browser test drives Debian's Chromium through chromedriver.
BROWSER_PACKAGES := chromium:chromium chromedriver:chromium-driver
# Every package pinned, for Linux x86_64 and Python 3.11 (`make lock` writes it).
LOCK := requirements/dev.lock
# tensorflow-serving-api asks for `tensorflow`, which tensorflow-cpu provides here: this
# metadata-only distribution says so to pip check (DEVELOPERS.md, "TensorFlow Serving's stubs").
TF_ALIAS := packaging/tensorflow-cpu-alias

# The lock's packages exactly (no resolver run), then the project without dependencies.
$(VENV)/.installed: pyproject.toml $(LOCK) $(TF_ALIAS)/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation ./$(TF_ALIAS)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $@

install: $(VENV)/.installed

# Re-resolve the lock files from pyproject.toml after a change there, keeping every pin
# that still fits. `make lock UPGRADE=1` moves every package to the newest version that
# fits; `make lock UV_ARGS="--upgrade-package numpy"` one. The images' locks
# (requirements/serve-<variant>.lock, the variants of docker/requirements.py) take the
# dev lock's versions, so the image runs what the tests ran.
UV_COMPILE = $(PY) -m uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) $(UV_ARGS)
# Where tensorflow-cpu runs, `tensorflow` (which tensorflow-serving-api asks for) stays out
# of the lock: $(TF_ALIAS) stands for it. The gpu variant runs the real one.
lock: install
	$(UV_COMPILE) pyproject.toml --extra dev --no-emit-package tensorflow -o $(LOCK)
	$(PY) docker/requirements.py --variant cpu \
	| $(UV_COMPILE) - -c $(LOCK) --no-emit-package tensorflow -o requirements/serve-cpu.lock
	for variant in gpu gpu-jax; do \
		$(PY) docker/requirements.py --variant $$variant \
		| $(UV_COMPILE) - -c $(LOCK) -o requirements/serve-$$variant.lock || exit 1; \
	done

# Installed with apt-get when missing and running as root; otherwise named, and make stops.
system-packages:
	@scripts/system-packages.sh $(BROWSER_PACKAGES)

serve: install
	$(PY) -m app --host $(HOST) --port $(PORT)

test: install system-packages
	$(PY) -m pytest

# Hostile, fuzzed and overload traffic against a real server (tests/reliability, ~3 min).
test-reliability: install
	$(PY) -m pytest -m reliability

# The image and the compose stack under a dockerd of the tests' own (root; see README).
test-docker: install
	$(PY) -m pytest -m docker

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy model app training

bench: install
	$(PY) scripts/bench_serving.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
