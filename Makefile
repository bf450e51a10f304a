# guardbot — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP_RUN  := $(VENV)/.installed-run
STAMP_DEV  := $(VENV)/.installed-dev

.PHONY: run test lint typecheck pytest venv dev bench bench-freqtrade docs clean docker-smoke

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

## run: set up the venv, then replay the bundled April-2025 crash with a reckless example strategy,
## guards on and off, and print both reports side by side (what the guards are for)
run: $(STAMP_RUN)
	$(BIN)/guardbot replay --config config/crash.toml --compare

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
	$(BIN)/python benchmarks/http_load.py

## bench-freqtrade: side venv with freqtrade (from the harness's lock file) and the harness's
## candles in .bench/, so benchmarks/replay.py races freqtrade; freqtrade stays out of .venv
FTBENCH    ?= ../shared/bench/freqtrade
BENCH_DIR  := .bench
FT_VENV    := $(BENCH_DIR)/ftvenv
FT_STAMP   := $(FT_VENV)/.installed
FT_FEATHER := $(BENCH_DIR)/user_data/data/binance/futures/BTC_USDT_USDT-1m-futures.feather
BENCH_CSV  := $(BENCH_DIR)/data/btcusdt_1m.csv

bench-freqtrade: $(FT_STAMP) $(FT_FEATHER) $(BENCH_CSV)

$(FT_STAMP):
	rm -rf $(FT_VENV)
	$(PYTHON) -m venv $(FT_VENV)
	$(FT_VENV)/bin/python -m pip install -q --upgrade pip
	$(FT_VENV)/bin/python -m pip install -q -r $(FTBENCH)/requirements-freqtrade.lock.txt
	$(FT_VENV)/bin/freqtrade --version
	touch $@

$(FT_FEATHER) $(BENCH_CSV) &: | $(FT_STAMP)
	PYTHONDONTWRITEBYTECODE=1 $(FT_VENV)/bin/python $(FTBENCH)/make_candles.py \
		--datadir $(BENCH_DIR)/user_data/data/binance --csv $(BENCH_CSV)

## docs: regenerate config/default.toml and the README's config table from the settings models
docs: $(STAMP_RUN)
	$(BIN)/guardbot config doc --toml > config/default.toml
	$(BIN)/python -c "import re,subprocess,pathlib; p=pathlib.Path('README.md'); t=subprocess.run(['$(BIN)/guardbot','config','doc'],capture_output=True,text=True,check=True).stdout.strip(); s=p.read_text(); a,b='<!-- config-table:start -->','<!-- config-table:end -->'; p.write_text(s[:s.index(a)+len(a)]+'\n'+t+'\n'+s[s.index(b):])"

## docker-smoke: build the image with podman (stand-in base from debootstrap when it cannot be
## pulled), check version, replay, HEALTHCHECK, SIGTERM exit and state kept across a restart.
## Needs root; several minutes; not part of `make test` (see docs/deploy.md)
docker-smoke:
	bash scripts/docker_smoke.sh

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
