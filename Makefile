# Every pip call is pinned by constraints.txt (torch==2.14.1); unpinned, pip pulls a multi-GB torch.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q -c constraints.txt
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench docs lint format clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[test,docs,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## noisy-label digits: CE vs GCE vs NCE+RCE vs PolyLoss (table + outputs/demo_curves.png)
	$(BIN)/python -m lightning_losses.recipes.demo

test: $(STAMP)  ## the full suite: unit, parity, property, resume, CLI, 2-rank DDP/FSDP (slow ones included)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)  ## benchmarks -> benchmarks/results/
	$(BIN)/python benchmarks/run_all.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) site outputs .pytest_cache
