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
# SEEDS="0 1 2": one run per seed (--seed_everything: weight init, augmentation, batch order); the data
# split (data.seed) stays, so the runs are one comparison: `make report` shows their mean +- s.d. and CI.
SEEDS ?=
# EXTEND=1 (with RESUME=1): continue a FINISHED run up to a larger trainer.max_epochs (ARGS=--trainer.max_epochs=N)
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
# Evaluation (eval-<paper>): SPLIT=val|test|all, TTA=none|flip|d4, extra options; DATASET/DATA_ROOT name
# the data to score (another dataset = external validation through experiments/<paper>/class_maps/).
SPLIT ?=
TTA ?=
EVAL_ARGS ?=
# Prediction (predict-<paper>): a folder of images and, optionally, a CSV of their clinical metadata.
INPUT ?=
META ?=
PYTEST_ARGS ?=
# Cache housekeeping: make cache-prune [DAYS=30] [DRY_RUN=1] (split files are never pruned)
DAYS ?= 30
DRY_RUN ?=
# Benchmarks: BENCH_SIZE=tiny|small|full|gpu, BENCH_ARGS='--sections loader,nets --threads 1 --device cpu'
BENCH_SIZE ?= small
BENCH_ARGS ?=
# make synth: the folder to write the miniature into
OUT ?=

# A paper's default dataset is the one its experiments/<paper>/config.yaml trains on (data.dataset).
config_dataset = $(shell awk '/^[^ \#]/{d=($$1=="data:")} d && $$1=="dataset:"{print $$2; exit}' experiments/$(1)/config.yaml 2>/dev/null)
dataset_of = $(or $(strip $(DATASET)),$(call config_dataset,$(1)))
PAPERS := $(patsubst experiments/%/config.yaml,%,$(wildcard experiments/*/config.yaml))
overlay_of = experiments/$(1)/data/$(call dataset_of,$(1)).yaml
RESUME_ARG = $(if $(filter 1 true yes,$(RESUME)),--resume=true)$(if $(filter 1 true yes,$(EXTEND)), --extend=true)
# $(call seeded,<command>,<overrides>): the command once, or once per seed of SEEDS (--seed_everything before the overrides)
seeded = $(if $(strip $(SEEDS)),set -e; for seed in $(SEEDS); do echo "== seed $$seed (SEEDS=$(strip $(SEEDS))) =="; $(1) --seed_everything=$$seed $(2); done,$(1) $(2))
define check_seeds
	@if [ -n "$(strip $(SEEDS))" ] && [ -n "$(RESUME_ARG)" ]; then echo "RESUME=1 continues one run; drop SEEDS (or RESUME) to run one per seed" >&2; exit 2; fi
endef

export WANDB_SILENT := true

help: ## [setup] list the targets, grouped
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -v order="$(HELP_GROUPS)" "$$HELP_AWK"
	@echo "variables: DATA_ROOT=<dataset folder>  DATASET=<name>  ARGS='<LightningCLI overrides>'  RESUME=1 [EXTEND=1]"
	@echo "           SEEDS='0 1 2' (one run per seed, same data split; sweeps: every combination per seed)"
	@echo "           SEG_DATA_ROOT / SEG_ARGS / SEG_CKPT (DualNet stage 1)  SWEEP_ARGS='--dry-run --max-runs N'"
	@echo "           CKPT=<checkpoint> N=16 XAI_ARGS='--methods gradcam kernel_shap' (explain-<paper>)  OUT=<folder> (synth)"
	@echo "           CKPT=... SPLIT=val|test|all TTA=none|flip|d4 DATASET=... DATA_ROOT=... EVAL_ARGS=... (eval-<paper>)"
	@echo "           CKPT=... INPUT=<folder of images> META=<csv> TTA=flip (predict-<paper>)"
	@echo "           BENCH_SIZE=tiny|small|full|gpu BENCH_ARGS=... (bench)  DAYS=30 DRY_RUN=1 (cache-prune)"
	@echo "papers and their datasets (DATASET=, default first: experiments/<paper>/config.yaml, data/<dataset>.yaml):"
	@$(foreach p,$(PAPERS),echo "           $(p): $(call config_dataset,$(p)) $(filter-out $(call config_dataset,$(p)),$(patsubst experiments/$(p)/data/%.yaml,%,$(wildcard experiments/$(p)/data/*.yaml)))";)
	@echo "every command: .venv/bin/python -m dermfuse_models.runner --help;  Python API: README.md, 'Python API'"
	@echo "offline wandb runs: wandb sync runs/<paper>/<run>/wandb/offline-run-*   (README.md, 'Where outputs go')"

# make help: targets grouped by the [group] that starts their "## " text, in this order (untagged: "other")
HELP_GROUPS := train evaluate data models develop setup other
define HELP_AWK
BEGIN { FS = ":.*## "; n = split(order, groups, " ") }
{
	group = "other"; text = $$2
	if (match(text, /^\[[a-z]+\] /)) { group = substr(text, 2, RLENGTH - 3); text = substr(text, RLENGTH + 1) }
	lines[group] = lines[group] sprintf("  \033[36m%-20s\033[0m %s\n", $$1, text)
}
END { for (i = 1; i <= n; i++) if (groups[i] in lines) printf "%s:\n%s", groups[i], lines[groups[i]] }
endef
export HELP_AWK

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(PY) -m uv pip install --python $(PY) -q -r requirements.lock
	$(PY) -m uv pip install --python $(PY) -q --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## [setup] create .venv and install the pinned stack (uv; ~30 s cold, instant when done)

lock: ## [setup] re-resolve requirements.lock from pyproject.toml (run after changing dependencies)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(PY) -m uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock

test: $(STAMP) lint-imports ## [develop] CPU test suite (what CI runs; layer contracts first); PYTEST_ARGS="-m 'not slow'" for the quick part
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint-imports: $(STAMP) ## [develop] the layer rules (pyproject.toml [tool.importlinter]): rooms point one way, no import cycles
	$(VENV)/bin/lint-imports

lint: $(STAMP) lint-imports ## [develop] ruff lint + format check, and the layer rules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## [develop] ruff: fix what it can and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The paper's config, its dataset overlay, then --data.root (real data) or the CPU smoke profile (synthetic).
CONFIGS = --config experiments/$(1)/config.yaml --config $(call overlay_of,$(1)) $(if $(strip $(DATA_ROOT)),--data.root=$(DATA_ROOT),--config experiments/$(1)/smoke.yaml)
# Fail early, naming the closest and all choices, when a paper or dataset overlay does not exist.
export CLOSEST := import difflib, sys; m = difflib.get_close_matches(sys.argv[1], sys.argv[2:], 1); print(f"; did you mean '{m[0]}'?" if m else "", end="")
define check_paper
	@test -f experiments/$(1)/config.yaml || { echo "unknown paper '$(1)'$$($(PYTHON) -c "$$CLOSEST" $(1) $(PAPERS)) (no experiments/$(1)/config.yaml; papers: $(PAPERS))" >&2; exit 2; }
	@test -f $(call overlay_of,$(1)) || { echo "no dataset overlay $(call overlay_of,$(1)); DATASET= one of: $$(ls experiments/$(1)/data | sed 's/\.yaml$$//' | tr '\n' ' ')" >&2; exit 2; }
endef

train-%: $(STAMP) ## [train] train a paper: make train-vitatt [DATASET=isic2019] [DATA_ROOT=...] [SEEDS="0 1 2"] [RESUME=1] [ARGS=...]
	$(call check_paper,$*)
	$(call check_seeds)
	$(call seeded,$(PY) -m dermfuse_models.runner fit $(call CONFIGS,$*) $(RESUME_ARG),$(ARGS))

SEG_CONFIGS = --config experiments/dualnet/segmenter.yaml $(if $(strip $(SEG_DATA_ROOT)),--data.root=$(SEG_DATA_ROOT),--config experiments/dualnet/segmenter_smoke.yaml)

train-dualnet: $(STAMP) ## [train] DualNet, both stages: segmenter, masks predicted once, dual-encoder classifier
	@if [ -n "$(strip $(DATA_ROOT))" ] && [ -z "$(strip $(SEG_DATA_ROOT))" ]; then echo "DATA_ROOT is set: also set SEG_DATA_ROOT=<ISIC 2018 Task 1 folder> for the segmenter (real classifier, real segmenter)" >&2; exit 2; fi
	$(MAKE) --no-print-directory train-dualnet-seg
	$(MAKE) --no-print-directory train-dualnet-cls

train-dualnet-seg: $(STAMP) ## [train] DualNet stage 1: Deep-UNet on ISIC 2018 Task 1 [SEG_DATA_ROOT=...] [SEG_ARGS=...]
	$(call check_seeds)
	$(call seeded,$(PY) -m dermfuse_models.runner fit $(SEG_CONFIGS) $(RESUME_ARG),$(SEG_ARGS))

train-dualnet-cls: $(STAMP) ## [train] DualNet stage 2 on image + predicted mask [SEG_CKPT=... default: latest finished segmenter]
	$(call check_paper,dualnet)
	$(call check_seeds)
	$(call seeded,$(PY) -m dermfuse_models.runner two-stage fit $(call CONFIGS,dualnet) $(if $(strip $(SEG_CKPT)),--seg_ckpt=$(SEG_CKPT)) $(RESUME_ARG),$(ARGS))

sweep-%: $(STAMP) ## [train] a paper's ablations (experiments/<paper>/sweep.yaml): wandb agent if online, else locally [SEEDS="0 1 2"]
	$(call check_paper,$*)
	$(PY) -m dermfuse_models.runner sweep experiments/$*/sweep.yaml --dataset $(call dataset_of,$*) $(if $(strip $(DATA_ROOT)),--data_root=$(DATA_ROOT)) $(if $(strip $(SEEDS)),--seeds $(SEEDS)) $(SWEEP_ARGS) $(if $(strip $(ARGS)),-- $(ARGS))

explain-%: $(STAMP) ## [evaluate] explanations of a trained run into <run>/explain/: make explain-vitatt [CKPT=...] [N=16] [XAI_ARGS=...]
	$(PY) -m dermfuse_models.runner explain $(if $(strip $(CKPT)),--ckpt=$(CKPT),--experiment=$*) --n=$(N) $(XAI_ARGS)

# Without CKPT: the best checkpoint of the paper's latest finished run. DATASET/DATA_ROOT: the data to score.
EVAL_CKPT = $(if $(strip $(CKPT)),--ckpt=$(CKPT),--experiment=$(1))

eval-%: $(STAMP) ## [evaluate] score a checkpoint into <run>/eval/<time>-.../ (run files untouched): make eval-vitatt [CKPT=...] [SPLIT=test] [DATASET=ph2 DATA_ROOT=...] [TTA=flip]
	$(PY) -m dermfuse_models.runner eval $(call EVAL_CKPT,$*) $(if $(strip $(SPLIT)),--split=$(SPLIT)) $(if $(strip $(DATASET)),--dataset=$(DATASET)) $(if $(strip $(DATA_ROOT)),--data_root=$(DATA_ROOT)) $(if $(strip $(TTA)),--tta=$(TTA)) $(EVAL_ARGS)

predict-%: $(STAMP) ## [evaluate] class probabilities (or masks) of new images: make predict-vitatt CKPT=... INPUT=<folder> [META=<csv>] [TTA=flip]
	@test -n "$(strip $(INPUT))" || { echo "predict-$*: set INPUT=<folder of images> (and CKPT=<checkpoint>, META=<csv> for clinical data)" >&2; exit 2; }
	$(PY) -m dermfuse_models.runner predict $(call EVAL_CKPT,$*) --input=$(INPUT) $(if $(strip $(META)),--meta=$(META)) $(if $(strip $(TTA)),--tta=$(TTA)) $(EVAL_ARGS)

report: $(STAMP) ## [evaluate] runs/report.md (+ runs/report_<paper>.png): paper number | ours mean +- s.d. over seeds | 95% CI | difference
	$(PY) -m dermfuse_models.runner report

cache-list: $(STAMP) ## [data] list the cache folder (DERMFUSE_CACHE, default .cache/dermfuse): caches, splits, miniatures, sizes, last use
	$(PY) -m dermfuse_data cache list

cache-prune: $(STAMP) ## [data] remove caches and miniatures unused for DAYS days (30; splits kept): make cache-prune [DAYS=30] [DRY_RUN=1]
	$(PY) -m dermfuse_data cache prune --older-than $(DAYS) $(if $(filter 1 true yes,$(DRY_RUN)),--dry-run)

bench: $(STAMP) ## [models] speed, side by side: loader, Trainer overhead, every paper net [BENCH_SIZE=small: < 15 min on 2 cores] -> bench/results/
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(PY) -m bench.run --size $(BENCH_SIZE) $(BENCH_ARGS)

bench-gpu: $(STAMP) ## [models] the bench on a CUDA node: every paper net at paper resolution, fp32/bf16/channels_last/compile, < 8 min
	PY=$(PY) bench/gpu.sh $(BENCH_ARGS)

check: $(STAMP) ## [data] a dataset's rows, classes, groups, splits and problems: make check DATASET=pad_ufes_20 DATA_ROOT=/data/PAD-UFES-20
	@test -n "$(strip $(DATASET))" -a -n "$(strip $(DATA_ROOT))" || { echo "make check needs DATASET=<name> and DATA_ROOT=<folder>" >&2; exit 2; }
	$(PY) -m dermfuse_data check --dataset $(DATASET) --root $(DATA_ROOT) $(ARGS)

synth: $(STAMP) ## [data] write a dataset's synthetic miniature in its publisher's layout: make synth DATASET=ham10000 OUT=/tmp/ham
	@test -n "$(strip $(DATASET))" -a -n "$(strip $(OUT))" || { echo "make synth needs DATASET=<name> and OUT=<folder>" >&2; exit 2; }
	$(PY) -m dermfuse_data synth --dataset $(DATASET) --out $(OUT) $(ARGS)

profile: $(STAMP) ## [models] parameters, GMACs and GFLOPs of every paper's net beside the paper's [ARGS="--only vitatt"]
	$(PY) -m dermfuse_models.runner profile $(ARGS)

clean: ## [setup] remove caches and run outputs (keeps .venv)
	rm -rf .cache runs wandb lightning_logs .pytest_cache

.PHONY: help setup lock test lint lint-imports format clean cache-list cache-prune report check synth profile bench bench-gpu train-dualnet train-dualnet-seg train-dualnet-cls
