# Developer entry points. `make test` is what CI runs (bash .ci/run).
#   make setup    venv in .venv with the dev, agent and pytorch extras (CPU torch)
#   make images   build harness/pytorch:cpu and harness/vllm:cpu (OFFLINE=1: debootstrap base + wheelhouse)
#   make model    write the tiny random-weight model to models/tiny
#   make study    run STUDY (default studies/demo.yaml), building only what is missing
#   make report   tables, effects, fronts, figures, report.md/html of DIR (default: newest study)
#   make bundle   DIR.tar.gz: a checksummed review bundle of DIR, then verify it
#   make test     pytest (CI=true: everything except tests marked gpu)
#   make lint     ruff + mypy
#   make docker   start a Docker engine where none answers (needs root)
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

IMAGE := harness/pytorch:cpu
IMAGE_FLAGS := --backend pytorch --device cpu $(if $(filter 1,$(OFFLINE)),--offline)
IMAGE_STAMP := $(STAMPS)/image-pytorch-cpu
# The image holds this package's source, so any change to it makes the image stale.
IMAGE_INPUTS := pyproject.toml images/pytorch/Dockerfile \
	$(shell find harness -name '*.py' -not -path '*/__pycache__/*' 2>/dev/null)
VLLM_IMAGE := harness/vllm:cpu
VLLM_IMAGE_FLAGS := --backend vllm --device cpu $(if $(filter 1,$(OFFLINE)),--offline)
VLLM_IMAGE_STAMP := $(STAMPS)/image-vllm-cpu
# `make study` builds the vLLM image only for studies that name vllm outside comments.
STUDY_IMAGE_STAMPS := $(IMAGE_STAMP) $(shell grep -v '^[[:space:]]*\#' $(STUDY) 2>/dev/null \
	| grep -qw vllm && echo $(VLLM_IMAGE_STAMP))

ifeq ($(CI),true)
PYTEST_ARGS ?= -m "not gpu"
endif

# An image removed from the engine (or a new engine) invalidates its stamp.
ifneq ($(filter study,$(MAKECMDGOALS)),)
$(shell docker image inspect $(IMAGE) >/dev/null 2>&1 || rm -f $(IMAGE_STAMP))
$(shell docker image inspect $(VLLM_IMAGE) >/dev/null 2>&1 || rm -f $(VLLM_IMAGE_STAMP))
endif

.PHONY: help setup docker images model study report bundle test lint clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

setup: $(STAMPS)/setup

$(STAMPS)/setup: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,agent,pytorch]' '$(TORCH_PIN)'
	mkdir -p $(@D) && touch $@

docker:
	scripts/ensure-docker.sh

# Always asks the engine: an unchanged rebuild takes seconds (wheelhouse and layers cached).
images: setup docker
	$(HARNESS) images build $(IMAGE_FLAGS)
	mkdir -p $(STAMPS) && touch $(IMAGE_STAMP)
	$(HARNESS) images build $(VLLM_IMAGE_FLAGS)
	touch $(VLLM_IMAGE_STAMP)

$(IMAGE_STAMP): $(IMAGE_INPUTS) | $(STAMPS)/setup
	scripts/ensure-docker.sh
	$(HARNESS) images build $(IMAGE_FLAGS)
	mkdir -p $(@D) && touch $@

$(VLLM_IMAGE_STAMP): $(IMAGE_INPUTS) images/vllm/Dockerfile | $(STAMPS)/setup
	scripts/ensure-docker.sh
	$(HARNESS) images build $(VLLM_IMAGE_FLAGS)
	mkdir -p $(@D) && touch $@

model: $(TINY_MODEL)/config.json

$(TINY_MODEL)/config.json: | $(STAMPS)/setup
	$(HARNESS) model tiny $(TINY_MODEL)

study: $(STAMPS)/setup $(TINY_MODEL)/config.json $(STUDY_IMAGE_STAMPS)
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
	$(BIN)/ruff check harness tests
	$(BIN)/mypy harness

clean:
	rm -rf .cache build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache $(TINY_MODEL)
	find harness tests -name __pycache__ -type d -prune -exec rm -rf {} +
