# One machine, two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv and install the project into it when needed; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench schemas clean system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/guanhuai demo --data-dir data

# Debian's chromium (the dashboard is tested in it) and CJK fonts, when missing and we are root.
system-packages:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and fonts-noto-cjk (Debian packages)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

test: $(STAMP) system-packages
	$(BIN)/pytest -q -p no:cacheprovider

# The store, rebuild and pipeline benchmarks at full size (tens of minutes): bench/results.json and
# bench/results.md. BENCH_ARGS passes options, e.g. BENCH_ARGS="--runs 3 --machine 'dev box'".
bench: $(STAMP)
	$(BIN)/guanhuai bench all --out-dir bench $(BENCH_ARGS)

schemas: $(STAMP)
	$(BIN)/guanhuai schema export docs/schemas

clean:
	rm -rf $(VENV) data .pytest_cache
