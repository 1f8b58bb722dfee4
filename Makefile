# Two entry points, both self-installing on a fresh clone with only Python 3.11+ and git:
#   make run   — the simulated lab + the bot with the demo config (+ Agents Playground if Node is here)
#   make test  — ruff, mypy (strict) and the whole pytest suite
# Both install the exact, hash-checked versions of the lock (requirements.txt for run,
# requirements-test.txt for test; `make lock` refreshes them from pyproject.toml), then the
# project itself without dependencies and with the locked build backend.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# pip-tools writes the lock; it lives in its own venv so it never changes the locked one.
LOCK_TOOLS := $(VENV)/lock-tools
PIP_TOOLS := pip-tools>=7.6.2,<8
COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --build-deps-for=wheel --build-deps-for=editable \
	--no-emit-index-url --no-emit-find-links

.PHONY: run test lint typecheck pytest fuzz lock dist clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(TEST_STAMP): requirements-test.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: $(RUN_STAMP)
	$(BIN)/python -m bot.demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check bot commands adapters lab tests bench manifest
	$(BIN)/ruff format --check bot commands adapters lab tests bench manifest

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

pytest: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

# Write both locks from pyproject.toml: pins that still fit its ranges are kept, what changed
# is resolved again; `make lock UPGRADE=1` moves everything to the newest versions allowed.
# The test lock is constrained to the run lock, so the two never disagree on a version.
lock: | $(BIN)/python
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/python -m pip install --quiet '$(PIP_TOOLS)'; }
	$(COMPILE) $(if $(UPGRADE),--upgrade) -o requirements.txt pyproject.toml
	$(COMPILE) $(if $(UPGRADE),--upgrade) --extra test -c requirements.txt \
		-o requirements-test.txt pyproject.toml

# The wheel an operator installs (README "Install in Teams"): dist/mcms_bot-VERSION-py3-none-any.whl
dist: $(RUN_STAMP)
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# The fuzz campaign at full strength: 10,000+ generated activities and invokes through the
# real endpoint (`make test` runs a bounded few hundred); prints the count and the time.
FUZZ_EXAMPLES ?= 10000
fuzz: $(TEST_STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider -s tests/fuzz

clean:
	rm -rf $(VENV) var logs artifacts docs/logs build dist
