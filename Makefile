# Every pip call is pinned by constraints.txt (torch==2.14.1); unpinned, pip pulls a multi-GB torch.
# `make` alone (or `make help`) lists the targets: each one's `##` comment is its help line.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q -c constraints.txt
STAMP  := $(VENV)/.installed
EXTRAS := test,docs,bench,lint
# `make demo` installs only what the demo needs, verbosely (pip's own progress), under its own stamp.
DEMO_EXTRAS := vision,plots
DEMO_STAMP  := $(VENV)/.installed-demo
# Optional torch index for the demo's install, e.g. the CPU-only build (no CUDA libraries):
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint format docs bench bench-smoke bench-gpu hooks clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[$(EXTRAS)]"
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "make demo: installing lightning_losses[$(DEMO_EXTRAS)] into $(VENV) (torch is the largest download)"
	$(if $(TORCH_INDEX),$(BIN)/pip install -c constraints.txt torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/pip install -c constraints.txt -e ".[$(DEMO_EXTRAS)]"
	touch $(DEMO_STAMP)

help:  ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z][a-zA-Z0-9_-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP)  ## create .venv and install the package with its test, docs, bench and lint extras

demo: $(DEMO_STAMP)  ## noisy-label digits, CE vs GCE vs NCE+RCE vs PolyLoss: table, outputs/demo_curves.png (~2.5 min)
	@echo "make demo: importing torch and lightning, then 4 runs of 60 epochs (a line every 10 epochs)"
	$(BIN)/python -m lightning_losses.recipes.demo

test: $(STAMP)  ## the full suite, as CI runs it: unit, parity, property, resume, CLI, 2-rank DDP/FSDP
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)  ## the suite without the tests marked slow (multi-process, multi-second): for iterating
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lint: $(STAMP)  ## ruff format --check, ruff check, mypy, codespell (CI runs it before the tests)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/codespell

format: $(STAMP)  ## apply ruff's formatting and its safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(STAMP)  ## build the documentation site into site/ (mkdocs --strict: a broken link fails)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)  ## benchmarks -> benchmarks/results/ (tens of minutes)
	$(BIN)/python benchmarks/run_all.py

bench-smoke: $(STAMP)  ## every benchmark on tiny sizes into a temp dir (~30 s; the tests run it too)
	$(BIN)/python benchmarks/run_all.py --smoke

bench-gpu: $(STAMP)  ## on a CUDA machine: losses in bf16, recipes in bf16-mixed, LM-head memory -> benchmarks/results/
	$(BIN)/python benchmarks/gpu_readiness.py $(if $(DRY_RUN),--dry-run,)

hooks: $(STAMP)  ## install the git pre-commit hooks (ruff, codespell) of .pre-commit-config.yaml
	$(PIP) -e ".[$(EXTRAS),dev]"
	$(BIN)/pre-commit install

clean:  ## remove .venv, site/, outputs/ and the tool caches
	rm -rf $(VENV) site outputs .pytest_cache .mypy_cache .ruff_cache
