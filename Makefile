# One machine, two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv and install the project into it when needed; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/guanhuai targets load mingxi-2020
	$(BIN)/guanhuai targets show --year 2020
	$(BIN)/guanhuai audit verify

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/guanhuai bench store

schemas: $(STAMP)
	$(BIN)/guanhuai schema export docs/schemas

clean:
	rm -rf $(VENV) data .pytest_cache
