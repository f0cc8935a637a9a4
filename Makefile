# Every target creates .venv itself; `make demo` and `make test` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo shop test lint bench soak format clean docs docs-serve dist

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

demo: $(STAMP)
	$(BIN)/sagaway demo

# `make shop` runs the reference shop through a sale day on SQLite (docs/sale.md), about seven
# minutes; `make shop SALE_ARGS=--quick` a run under three. The report goes to sale/report.html.
SALE_ARGS ?=

shop: $(STAMP)
	$(BIN)/sagaway shop sale --out sale $(SALE_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The documentation site, into site/; --strict: a broken link, anchor or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The sdist and the wheel (built from the sdist) into dist/, as a release would make them.
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .
	rm -rf build sagaway.egg-info

# `make bench` runs every benchmark; `make bench BENCH=bench/slo.py` runs one.
BENCH ?= $(filter-out bench/gen_%,$(wildcard bench/[a-z]*.py))

bench: $(BENCH_STAMP)
	@for script in $(BENCH); do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# `make soak` runs the 30-minute soak of docs/reliability.md (not part of `make test`);
# `make soak SOAK_MINUTES=5` a shorter one. The figures go to soak.json.
SOAK_MINUTES ?= 30

soak: $(STAMP)
	$(BIN)/python -m tests.soak --minutes $(SOAK_MINUTES) --out soak.json

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis site dist build \
		sagaway.egg-info sale
