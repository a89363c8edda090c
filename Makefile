# omni-r1: the two commands for a fresh machine are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Stage commands in dvc.yaml call `omni-r1`, so the environment's bin goes first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install run test bench faults lint clean verl-image-check smoke-paper

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0  # the CPU stack's exact pin (pyproject allows the cluster's 2.11 too)
	$(BIN)/python -m pip install -e '.[dev,verl]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/omni-r1 summary

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The paper's shapes (512 px, 1024 codes per image, 4096-token budgets, real-source adapters)
# with a tiny-width model: every stage for 1-2 steps on CPU, outputs under smoke/
# (tests/smoke_paper.py; `make test` runs it too, as tests/test_smoke_paper.py).
smoke-paper: $(STAMP)
	$(BIN)/python tests/smoke_paper.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Fault campaign (not part of `test`): kills, outages, concurrent runs, corrupt files, fuzzing,
# secrets; writes reports/faults.md and metrics/faults.json.
faults: $(STAMP)
	$(BIN)/python -m benchmarks.faults

lint: $(STAMP)
	$(BIN)/ruff check omni_r1 flows tests benchmarks

# Resolve the cluster image's pins (infra/images/verl) with the project's dependencies, installing nothing.
verl-image-check: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash infra/images/verl/check_resolution.sh

clean:
	rm -rf $(VENV)
