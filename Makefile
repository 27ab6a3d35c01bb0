# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dlprep-installed
DEMO_OUT ?= demo-out

.PHONY: venv demo test test-all lint bench clean

# torch is pinned and installed first: on these machines torch==2.13.0 is a CPU wheel already on
# disk, while a bare `torch` requirement would download a multi-GB CUDA build.
$(STAMP): setup.cfg setup.py pyproject.toml dlprep/formats/_osmpack.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/dlprep --offline fetch mnist-sample
	$(BIN)/dlprep --offline info mnist-sample
	$(BIN)/dlprep --offline preview mnist-sample --out $(DEMO_OUT)/mnist-sample.png
	$(BIN)/dlprep --offline train-baseline cnn mnist-sample --out $(DEMO_OUT)/cnn-mnist-sample

lint: venv
	$(BIN)/ruff check dlprep tests benchmarks tools setup.py

test: venv lint
	$(BIN)/python -m pytest -q

test-all: venv
	$(BIN)/python -m pytest -q -m ''

bench: venv
	for b in benchmarks/*_bench.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info $(DEMO_OUT)
