# One machine, two commands: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv and install the project into it when needed; nothing is installed by hand.
# What is installed is requirements.lock (every package pinned with its hashes, for Python 3.11+
# on any platform): pyproject.toml keeps the ranges, `make lock` refreshes the lock from them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# uv resolves the lock; it is only needed to refresh it, never to install from it (plain pip does).
UV_VERSION := 0.13.10
LOCK_TOOLS := $(VENV)/lock-tools

.PHONY: demo test bench schemas clean system-packages lock

# The lock's packages with their hashes, then the project itself without dependencies, built by the
# locked hatchling (no build isolation, so nothing unpinned is downloaded). The venv's own pip
# (the Python's bundled one) is used as it is.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock after changing a range in pyproject.toml: the main dependencies, the test and
# bench extras, and the build backend with what it asks for an editable install (hatchling's
# get_requires_for_build_editable: editables) for the install above. Pins already in the lock are
# kept when they still satisfy the ranges; `make lock LOCK_ARGS=--upgrade` takes the newest
# releases (`LOCK_ARGS="--upgrade-package NAME"` one package). tests/unit/test_lock.py fails when
# pyproject.toml and the lock disagree.
lock: $(LOCK_TOOLS)/bin/uv
	$(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], 'editables~=0.3', sep='\n')" \
	| $(LOCK_TOOLS)/bin/uv pip compile pyproject.toml - --extra test --extra bench \
		--universal --python-version 3.11 --generate-hashes \
		--custom-compile-command 'make lock' --quiet -o $(LOCK) $(LOCK_ARGS)

$(LOCK_TOOLS)/bin/uv:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

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
