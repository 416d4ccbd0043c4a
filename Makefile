# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres,spark]'
	touch $(STAMP)

.PHONY: install demo test test-all bench
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dpgate demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -m ''

bench: $(STAMP)
	$(BIN)/python bench/queries.py
