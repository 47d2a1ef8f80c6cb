# The two commands of the README: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test services lint bench bench-e2e chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

services:
	bash scripts/services.sh

# make demo DEMO_FLAGS=--console keeps the stack and the web console running (Ctrl-C stops).
demo: $(STAMP) services
	$(BIN)/mlc demo $(DEMO_FLAGS)

test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) services
	$(BIN)/python bench/parse.py

# End to end (README "Benchmarks"): X3 without latency (CPU bound), then 200 ms with a cap of 8.
bench-e2e: $(STAMP) services
	$(BIN)/python bench/e2e.py -n 2000 -l 5 -v 200 --latency 0 --workers 1 --concurrency 4
	$(BIN)/python bench/e2e.py -n 2000 -l 5 -v 200 --latency 200 --cap 8 --workers 2 --concurrency 6 --baseline-limit 200

chaos: $(STAMP) services
	$(BIN)/python bench/chaos.py -n 2000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
