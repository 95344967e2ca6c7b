# Two commands on a fresh machine: `make serve` and `make test`. Both create the
# virtual environment on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install system-packages serve test test-reliability test-docker lint bench clean
# The browser test drives Debian's Chromium through chromedriver.
BROWSER_PACKAGES := chromium:chromium chromedriver:chromium-driver

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

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
