# Developer entry points. `make test` is what CI runs (bash .ci/run).
#   make setup    venv in .venv with the dev, agent and pytorch extras (CPU torch)
#   make images   build harness/pytorch:cpu and harness/vllm:cpu (OFFLINE=1: debootstrap base + wheelhouse)
#   make images-cuda  build harness/pytorch:cuda and harness/vllm:cuda (OFFLINE=1) and check each without a GPU
#   make model    write the tiny random-weight model to models/tiny
#   make study    run STUDY (default studies/demo.yaml), building only what is missing
#   make report   tables, effects, fronts, figures, report.md/html of DIR (default: newest study)
#   make bundle   DIR.tar.gz: a checksummed review bundle of DIR, then verify it
#   make test     pytest (CI=true: everything except tests marked gpu, cuda_image or heavy)
#   make lint     ruff + mypy
#   make docker   start a Docker engine where none answers (needs root)
#   make slurm    start a single-node Slurm cluster where none answers (needs root; docs/slurm.md)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HARNESS := $(BIN)/harness
OFFLINE ?= 1
STUDY ?= studies/demo.yaml
TORCH_PIN := torch==2.13.0
STAMPS := .cache/stamps
TINY_MODEL := models/tiny

OFFLINE_FLAG := $(if $(filter 1,$(OFFLINE)),--offline)

# CI leaves out tests that need a GPU, those that build CUDA images (GBs each; run them with
# pytest -m cuda_image, or make images-cuda) and the heavy ones whose ground a default test mostly
# covers too (pytest -m heavy; run them before closing a change to what they cover)
ifeq ($(CI),true)
PYTEST_ARGS ?= -m "not gpu and not cuda_image and not heavy" --durations=30
endif

#: the CUDA images with a registry-less recipe (TensorRT-LLM's needs NVIDIA's registry)
CUDA_IMAGES := pytorch vllm

.PHONY: help setup docker slurm images images-cuda model study report bundle test lint clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

setup: $(STAMPS)/setup

$(STAMPS)/setup: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,agent,pytorch]' '$(TORCH_PIN)'
	mkdir -p $(@D) && touch $@

docker:
	scripts/ensure-docker.sh

slurm:
	scripts/ensure-slurm.sh

# Always asks the engine: an unchanged rebuild only repacks the harness wheel (layers and the
# wheelhouse are cached), so an image is never stale against the source.
images: setup docker
	$(HARNESS) images build --backend pytorch --device cpu $(OFFLINE_FLAG)
	$(HARNESS) images build --backend vllm --device cpu $(OFFLINE_FLAG)

# Each CUDA image is several GB (docs/images.md has sizes and times); the check needs no GPU.
images-cuda: setup docker
	for b in $(CUDA_IMAGES); do \
		$(HARNESS) images build --backend $$b --device cuda $(OFFLINE_FLAG) \
		&& $(HARNESS) images check --backend $$b --device cuda || exit 1; \
	done

model: $(TINY_MODEL)/config.json

$(TINY_MODEL)/config.json: | $(STAMPS)/setup
	$(HARNESS) model tiny $(TINY_MODEL)

# Builds (or refreshes from cache) exactly the images the study's runs use, then runs it.
study: $(STAMPS)/setup $(TINY_MODEL)/config.json docker
	$(HARNESS) images build --study $(STUDY) $(OFFLINE_FLAG)
	$(HARNESS) study run $(STUDY)

# DIR: a study folder (results/NAME-STAMP); by default the newest one under results/.
DIR ?= $(shell ls -td results/*/ 2>/dev/null | head -n 1)
STUDY_DIR = $(patsubst %/,%,$(DIR))

report: $(STAMPS)/setup
	@test -n "$(STUDY_DIR)" || { echo "no study folder: run 'make study' or give DIR=results/NAME-STAMP" >&2; exit 2; }
	$(HARNESS) report $(STUDY_DIR)

bundle: $(STAMPS)/setup
	@test -n "$(STUDY_DIR)" || { echo "no study folder: run 'make study' or give DIR=results/NAME-STAMP" >&2; exit 2; }
	$(HARNESS) bundle create $(STUDY_DIR) -o $(STUDY_DIR).tar.gz
	$(HARNESS) bundle verify $(STUDY_DIR).tar.gz

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check harness tests benchmarks scripts
	$(BIN)/mypy harness

clean:
	rm -rf .cache build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache $(TINY_MODEL)
	find harness tests -name __pycache__ -type d -prune -exec rm -rf {} +
