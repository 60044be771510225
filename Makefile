# The two commands: `make run` (the app on the embedded default; `make run SHARE=1` for a classroom) and `make test` (the whole suite).
# Both set up .venv/ on a fresh machine by themselves and are quiet when there is nothing to do.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
RUNTIME := .venv/.runtime-installed
PACKAGE := .venv/.package-installed
TESTTOOLS := .venv/.test-installed
# Debian's Chromium for the browser tests; never `playwright install` (it downloads a browser).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint demo bench bench-methods fashion-mnist setup

run: $(PACKAGE)
	@$(PY) -m bar_app $(if $(SHARE),--share)

demo: $(PACKAGE)
	@$(PY) -m bar_core train --out runs/demo --overwrite

test: $(TESTTOOLS) $(CHROMIUM)
	@.venv/bin/ruff check --quiet .
	@$(PY) -m pytest -q

lint: $(TESTTOOLS)
	@.venv/bin/ruff check .

bench: $(PACKAGE)
	@$(PY) bench/run_all.py

# BAR against L0 and magnitude pruning on the full Fashion-MNIST (about an hour on 2 cores): docs/results/
bench-methods: $(PACKAGE) fashion-mnist
	@$(PY) bench/bench_methods.py

# Debian's full Fashion-MNIST (60,000 + 10,000 images) for the benchmark; the tests use the shipped subset.
fashion-mnist:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || { \
	  echo "Installing Debian's dataset-fashion-mnist ..."; $(SUDO) apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null; }

setup: $(TESTTOOLS)

# pip's own chatter goes to a log that is shown only if the install fails.
# pip byte-compiles on one core; compileall -j 0 does the same on every core (a minute less on 2 cores).
# Its errors are the few files that are not Python 3.11 (torch's py312 test helpers), which pip skips too.
$(RUNTIME): requirements.txt
	@test -x $(PY) || { echo "Creating .venv/ ..."; python3 -m venv .venv; }
	@echo "Installing requirements.txt into .venv/ (torch takes a minute) ..."
	@$(PIP) --no-compile -r requirements.txt > .venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
	@$(PY) -m compileall -q -j 0 .venv/lib > .venv/compileall.log 2>&1 || true
	@touch $@

# The project itself, editable: `import bar_core`, `bar ...` and `python -m bar_app` work from any folder.
# No build isolation: setuptools comes pinned in requirements.txt, so this step needs no network.
$(PACKAGE): $(RUNTIME) pyproject.toml
	@$(PIP) --no-deps --no-build-isolation -e . > .venv/pip-package.log 2>&1 || { cat .venv/pip-package.log; exit 1; }
	@touch $@

$(TESTTOOLS): $(PACKAGE) requirements-test.txt
	@$(PIP) --no-compile -r requirements-test.txt > .venv/pip-test.log 2>&1 || { cat .venv/pip-test.log; exit 1; }
	@$(PY) -m compileall -q -j 0 .venv/lib > .venv/compileall-test.log 2>&1 || true
	@touch $@

$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser tests ..."
	@$(SUDO) apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null
