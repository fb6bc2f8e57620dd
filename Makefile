# Set-up and the commands the README names. Every target sets itself up from nothing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PFA    := $(VENV)/bin/perfedavg
OUT    ?= figures-out
# ../shared/data holds offline copies of MNIST and CIFAR-10 on the project's machines
PERFEDAVG_DATA ?= $(if $(wildcard ../shared/data/MNIST),$(abspath ../shared/data),)
export PERFEDAVG_DATA

.PHONY: setup setup-test demo test test-full lint bench dial-bench gpu-check notebook clean

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

# constraints.txt pins torch to the CPU build (the package itself asks for a range)
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

# the tests also need the optional extras (hypothesis, Ray for the sweep backend, nbclient for the notebook)
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray]'
	touch $@

## the main job on the embedded default (no download): the quick draft of every figure
## (synthetic tasks with exact constants plus the bounds), ending with the index path
demo: setup
	$(PFA) figures --quick --out $(OUT)

## the classroom notebook: JupyterLab and ipywidgets in the project's environment, then the tutorial opened
notebook: $(VENV)/.installed-notebook
	$(VENV)/bin/jupyter lab notebooks/tutorial.ipynb

$(VENV)/.installed-notebook: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[notebook]'
	touch $@

## lint, format and type checks (ruff and mypy, configured in pyproject.toml); CI runs them before the tests
lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## the default test suite (fast; < 10 minutes on 2 cores)
test: setup-test
	$(PY) -m pytest

## tests on the real MNIST / CIFAR-10 copies (PERFEDAVG_DATA) and slow tests
test-full: setup-test
	$(PY) -m pytest -m 'full_data or slow'

## speed of the engine against a per-client nn.Module loop, as JSON
bench: setup
	$(PFA) bench

## the tutorial's dial: seconds per slider change (a short run and its redraw), as JSON
dial-bench: setup
	$(PY) notebooks/dial.py

## on a machine with a GPU: the CUDA tests, then the bench there on both input shapes (JSON in $(OUT)/);
## runs from this checkout with GPU_PYTHON, whose torch must be a CUDA build (the venv's is the CPU one)
GPU_PYTHON ?= python3
gpu-check:
	mkdir -p $(OUT)
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest -p no:cacheprovider -q -m cuda tests/test_cuda.py
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m perfedavg bench --device cuda --json-out $(OUT)/bench-cuda-mnist.json
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m perfedavg bench --device cuda --shape cifar10 --json-out $(OUT)/bench-cuda-cifar10.json

clean:
	rm -rf $(VENV) runs
