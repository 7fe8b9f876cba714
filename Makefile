# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## The monthly job on the bundled sample publication (file transport: .eml files in outbox/).
run: $(STAMP)
	$(BIN)/newsletter check
	$(BIN)/newsletter build

## The whole test suite, then the linters.
test: $(STAMP)
	$(BIN)/pytest -q
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) build outbox .pytest_cache .mypy_cache
