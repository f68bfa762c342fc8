# One command each: `make demo` sets everything up and runs the main job on the bundled examples;
# `make test` runs the tests. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo lint test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	# uv resolves and downloads in parallel (pip alone took ~12 min on a fresh machine); pip if uv fails
	$(BIN)/python -m uv pip install --python $(BIN)/python -q -e ".[test]" || $(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/rayfold run examples/afdb --out out/demo --engine builtin
	$(BIN)/rayfold stats out/demo
	@echo "report: out/demo/report/index.html"

lint: setup
	$(BIN)/ruff check src tests bench jobs
	$(BIN)/mypy

test: setup
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/fragment_speed.py
	$(BIN)/python bench/domain_boundaries.py
	$(BIN)/python bench/cluster_speed.py
	$(BIN)/python bench/end_to_end.py
	$(BIN)/python bench/cluster_semantics.py  # ~40 min on 2 cores: one clustering of 1,784 fragments

clean:
	rm -rf out/demo
