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
# with a tiny-width model: every stage for 1-2 steps on CPU, outputs under smoke/.
SMOKE := --overlay params/paper.yaml --overlay params/smoke-paper.yaml
smoke-paper: $(STAMP)
	rm -rf smoke
	$(BIN)/python tests/data/upstream_fixtures.py smoke/sources 4
	$(BIN)/omni-r1 gallery $(SMOKE)
	$(BIN)/omni-r1 prepare $(SMOKE)
	$(BIN)/omni-r1 tokenizer $(SMOKE)
	$(BIN)/omni-r1 base $(SMOKE)
	$(BIN)/omni-r1 encode $(SMOKE)
	$(BIN)/omni-r1 bootstrap $(SMOKE)
	$(BIN)/omni-r1 pesft --track omni_r1 $(SMOKE)
	$(BIN)/omni-r1 pesft --track omni_r1_zero $(SMOKE)
	$(BIN)/omni-r1 perpo --track omni_r1 $(SMOKE)
	$(BIN)/omni-r1 evaluate --track omni_r1 --step 2 $(SMOKE)
	$(BIN)/omni-r1 evaluate --model smoke/checkpoints/omni_r1/perpo/step_2 --bench smoke/sources/omni-bench $(SMOKE)
	$(BIN)/omni-r1 report $(SMOKE)
	$(BIN)/omni-r1 plan $(SMOKE)

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
