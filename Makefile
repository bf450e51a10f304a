# guardbot — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP_RUN  := $(VENV)/.installed-run
STAMP_DEV  := $(VENV)/.installed-dev

.PHONY: run test lint typecheck pytest venv dev bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml requirements.lock
	$(PIP) install -q -c requirements.lock -e .
	touch $@

$(STAMP_DEV): $(BIN)/python pyproject.toml requirements.lock
	$(PIP) install -q -c requirements.lock -e '.[dev]'
	touch $@ $(STAMP_RUN)

venv: $(STAMP_RUN)
dev: $(STAMP_DEV)

## run: set up the venv and run a paper session on the bundled data, then print its report
run: $(STAMP_RUN)
	$(BIN)/guardbot run --config config/default.toml

## test: set up the venv with dev extras, then lint, type-check and run the whole test suite
test: $(STAMP_DEV) lint typecheck pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint --failure-threshold warning Dockerfile

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

pytest: $(STAMP_DEV)
	$(BIN)/pytest -q

## bench: the speed and memory benchmarks (ratios and figures, not pass/fail)
bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/guards.py
	$(BIN)/python benchmarks/replay.py

## docs: regenerate config/default.toml and the README's config table from the settings models
docs: $(STAMP_RUN)
	$(BIN)/guardbot config doc --toml > config/default.toml
	$(BIN)/python -c "import re,subprocess,pathlib; p=pathlib.Path('README.md'); t=subprocess.run(['$(BIN)/guardbot','config','doc'],capture_output=True,text=True,check=True).stdout.strip(); s=p.read_text(); a,b='<!-- config-table:start -->','<!-- config-table:end -->'; p.write_text(s[:s.index(a)+len(a)]+'\n'+t+'\n'+s[s.index(b):])"

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
