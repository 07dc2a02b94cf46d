# dermfuse: `make help` lists the targets. Every target creates the environment first if needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Real data: DATA_ROOT=/data/PAD-UFES-20. Without it, the synthetic miniature and the CPU smoke profile.
DATA_ROOT ?=
# Extra LightningCLI overrides, e.g. ARGS="--trainer.devices=8 --trainer.precision=bf16-mixed"
ARGS ?=
PYTEST_ARGS ?=

export WANDB_SILENT := true

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: DATA_ROOT=<dataset folder>  ARGS='<LightningCLI overrides>'"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(PY) -m uv pip install --python $(PY) -q -r requirements.lock
	$(PY) -m uv pip install --python $(PY) -q --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the pinned stack (uv; ~30 s cold, instant when done)

lock: ## re-resolve requirements.lock from pyproject.toml (run after changing dependencies)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(PY) -m uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

test: $(STAMP) ## CPU test suite (what CI runs); PYTEST_ARGS="-m 'not slow'" for the quick part
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

# The paper's config; without DATA_ROOT the CPU smoke profile on the synthetic miniature is layered on top.
CONFIGS = --config experiments/$(1)/config.yaml $(if $(strip $(DATA_ROOT)),--data.root=$(DATA_ROOT),--config experiments/$(1)/smoke.yaml)

train-%: $(STAMP) ## train a paper: make train-vitatt [DATA_ROOT=...] [ARGS=...]
	$(PY) -m dermfuse_models.cli fit $(call CONFIGS,$*) $(ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .cache runs wandb lightning_logs .pytest_cache

.PHONY: help setup lock test clean
