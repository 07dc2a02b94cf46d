# dermfuse: `make help` lists the targets. Every target creates the environment first if needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Real data: DATA_ROOT=/data/PAD-UFES-20. Without it, the synthetic miniature and the CPU smoke profile.
DATA_ROOT ?=
# Dataset of a paper: experiments/<paper>/data/<DATASET>.yaml (default: the paper's first dataset below).
DATASET ?=
# Extra LightningCLI overrides, e.g. ARGS="--trainer.devices=8 --trainer.precision=bf16-mixed"
ARGS ?=
# RESUME=1: continue the latest interrupted run of that paper + dataset from its checkpoints/last.ckpt
# (a finished run is left untouched; RESUME=1 EXTEND=1 ARGS=--trainer.max_epochs=N trains it further).
RESUME ?=
EXTEND ?=
# DualNet stage 1 (segmenter, ISIC 2018 Task 1): its data folder, overrides and an explicit checkpoint.
SEG_DATA_ROOT ?=
SEG_ARGS ?=
SEG_CKPT ?=
# Sweep runner options, e.g. SWEEP_ARGS="--dry-run" or "--max-runs 2"
SWEEP_ARGS ?=
# Explanations: a checkpoint (default: best of the paper's latest finished run), image count, extra options
CKPT ?=
N ?= 16
XAI_ARGS ?=
PYTEST_ARGS ?=

# A paper's default dataset is the one its experiments/<paper>/config.yaml trains on (data.dataset).
config_dataset = $(shell awk '/^[^ \#]/{d=($$1=="data:")} d && $$1=="dataset:"{print $$2; exit}' experiments/$(1)/config.yaml 2>/dev/null)
dataset_of = $(or $(strip $(DATASET)),$(call config_dataset,$(1)))
PAPERS := $(patsubst experiments/%/config.yaml,%,$(wildcard experiments/*/config.yaml))
overlay_of = experiments/$(1)/data/$(call dataset_of,$(1)).yaml
RESUME_ARG = $(if $(filter 1 true yes,$(RESUME)),--resume=true)$(if $(filter 1 true yes,$(EXTEND)), --extend=true)

export WANDB_SILENT := true

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: DATA_ROOT=<dataset folder>  DATASET=<name>  ARGS='<LightningCLI overrides>'  RESUME=1 [EXTEND=1]"
	@echo "             SEG_DATA_ROOT / SEG_ARGS / SEG_CKPT (DualNet stage 1)  SWEEP_ARGS='--dry-run --max-runs N'"
	@echo "             CKPT=<checkpoint> N=16 XAI_ARGS='--methods gradcam kernel_shap' (explain-<paper>)"
	@echo "  papers and their datasets (DATASET=, default first: experiments/<paper>/config.yaml, data/<dataset>.yaml):"
	@$(foreach p,$(PAPERS),echo "             $(p): $(call config_dataset,$(p)) $(filter-out $(call config_dataset,$(p)),$(patsubst experiments/$(p)/data/%.yaml,%,$(wildcard experiments/$(p)/data/*.yaml)))";)

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
	$(PY) -m uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock

test: $(STAMP) lint-imports ## CPU test suite (what CI runs; layer contracts first); PYTEST_ARGS="-m 'not slow'" for the quick part
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint-imports: $(STAMP) ## the layer rules (pyproject.toml [tool.importlinter]): rooms point one way, no import cycles
	$(VENV)/bin/lint-imports

lint: $(STAMP) lint-imports ## ruff lint + format check, and the layer rules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff: fix what it can and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The paper's config, its dataset overlay, then --data.root (real data) or the CPU smoke profile (synthetic).
CONFIGS = --config experiments/$(1)/config.yaml --config $(call overlay_of,$(1)) $(if $(strip $(DATA_ROOT)),--data.root=$(DATA_ROOT),--config experiments/$(1)/smoke.yaml)
# Fail early, naming the choices, when a paper or dataset overlay does not exist.
define check_paper
	@test -f experiments/$(1)/config.yaml || { echo "no experiments/$(1)/config.yaml; papers: $$(ls experiments | tr '\n' ' ')" >&2; exit 2; }
	@test -f $(call overlay_of,$(1)) || { echo "no dataset overlay $(call overlay_of,$(1)); DATASET= one of: $$(ls experiments/$(1)/data | sed 's/\.yaml$$//' | tr '\n' ' ')" >&2; exit 2; }
endef

train-%: $(STAMP) ## train a paper: make train-vitatt [DATASET=isic2019] [DATA_ROOT=...] [RESUME=1] [ARGS=...]
	$(call check_paper,$*)
	$(PY) -m dermfuse_models.runner fit $(call CONFIGS,$*) $(RESUME_ARG) $(ARGS)

SEG_CONFIGS = --config experiments/dualnet/segmenter.yaml $(if $(strip $(SEG_DATA_ROOT)),--data.root=$(SEG_DATA_ROOT),--config experiments/dualnet/segmenter_smoke.yaml)

train-dualnet: $(STAMP) ## DualNet, both stages: segmenter, masks predicted once, dual-encoder classifier
	@if [ -n "$(strip $(DATA_ROOT))" ] && [ -z "$(strip $(SEG_DATA_ROOT))" ]; then echo "DATA_ROOT is set: also set SEG_DATA_ROOT=<ISIC 2018 Task 1 folder> for the segmenter (real classifier, real segmenter)" >&2; exit 2; fi
	$(MAKE) --no-print-directory train-dualnet-seg
	$(MAKE) --no-print-directory train-dualnet-cls

train-dualnet-seg: $(STAMP) ## DualNet stage 1: Deep-UNet on ISIC 2018 Task 1 [SEG_DATA_ROOT=...] [SEG_ARGS=...]
	$(PY) -m dermfuse_models.runner fit $(SEG_CONFIGS) $(RESUME_ARG) $(SEG_ARGS)

train-dualnet-cls: $(STAMP) ## DualNet stage 2 on image + predicted mask [SEG_CKPT=... default: latest finished segmenter]
	$(call check_paper,dualnet)
	$(PY) -m dermfuse_models.runner two-stage fit $(call CONFIGS,dualnet) $(if $(strip $(SEG_CKPT)),--seg_ckpt=$(SEG_CKPT)) $(RESUME_ARG) $(ARGS)

sweep-%: $(STAMP) ## a paper's ablations (experiments/<paper>/sweep.yaml): wandb agent if online, else run locally
	$(call check_paper,$*)
	$(PY) -m dermfuse_models.runner sweep experiments/$*/sweep.yaml --dataset $(call dataset_of,$*) $(if $(strip $(DATA_ROOT)),--data_root=$(DATA_ROOT)) $(SWEEP_ARGS) $(if $(strip $(ARGS)),-- $(ARGS))

explain-%: $(STAMP) ## explanations of a trained run into <run>/explain/: make explain-vitatt [CKPT=...] [N=16] [XAI_ARGS=...]
	$(PY) -m dermfuse_models.runner explain $(if $(strip $(CKPT)),--ckpt=$(CKPT),--experiment=$*) --n=$(N) $(XAI_ARGS)

report: $(STAMP) ## runs/report.md (+ runs/report_<paper>.png): finished runs beside the papers' numbers
	$(PY) -m dermfuse_models.runner report

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .cache runs wandb lightning_logs .pytest_cache

.PHONY: help setup lock test lint lint-imports format clean report train-dualnet train-dualnet-seg train-dualnet-cls
