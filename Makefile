# The set-up commands of the README: `make train` (the main job), `make test` (the fast tier: unit tests
# and one small end-to-end Ray run, under 5 minutes) and `make test-all` (everything; what CI runs).
# Each creates .venv and installs the project on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export RAY_AUTH_MODE ?= disabled

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: on a CPU machine with the local wheel this is the small CPU build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install train test test-all bench
install: $(STAMP)

train: $(STAMP)
	$(BIN)/hamur train

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/model_step.py
