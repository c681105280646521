# The two commands a newcomer needs: `make run` (embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run run-emulators test test-fast lint bench clean constraints

venv: $(STAMP)

# constraints.txt pins the versions the suite was last run with (pip freeze of a working .venv): pip
# resolves in seconds instead of backtracking for minutes over the aiobotocore/botocore/s3fs family.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,trainer]'
	touch $(STAMP)

## Refresh constraints.txt from the current .venv after changing dependencies in pyproject.toml.
constraints: venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^training-platform' > constraints.txt

## Serve api + launcher + status_sync in one process on $PORT (default 4000): SQLite under .data/, in-process bus.
run: venv
	$(BIN)/python -m functions.dev.embedded

## The deployed topology on one machine: both emulators, each function its own process, push subscriptions.
run-emulators: venv
	$(BIN)/python -m functions.dev.local_stack

## Lint, types and architecture contracts, then the whole suite (the fixtures start and stop the emulators).
test: venv lint
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q tests/unit

## ruff (lint and format), mypy (strict on domain, ports and use cases; checked elsewhere), import contracts.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Benchmarks (not part of `make test`): each writes tests/bench/results/*.json; see tests/bench/README.md.
bench: venv
	$(BIN)/python -m tests.bench.bench_api
	$(BIN)/python -m tests.bench.bench_launcher
	$(BIN)/python -m tests.bench.bench_status_sync
	$(BIN)/python tests/bench/bench_trainer.py

clean:
	rm -rf $(VENV) .data .pytest_cache
