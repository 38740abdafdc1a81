# Two commands (see README):
#   make demo   set up .venv and run the offline lottery-ticket study (then results/demo/ and the README's tables)
#   make test   set up .venv and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
JOBS ?= 1

.PHONY: setup demo tables test bench clean-demo

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python -m tickets_core.sweep sweeps/demo.yaml --workers $(JOBS)
	$(BIN)/python -m tickets_core.analysis.record runs/demo results/demo
	$(BIN)/python -m tickets_core.analysis.doc_tables

tables: setup                 # README and docs tables from the committed data (results/, benchmarks/results/)
	$(BIN)/python -m tickets_core.analysis.doc_tables

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run_all --quick
