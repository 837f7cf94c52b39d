# The two commands a newcomer needs: `make run` and `make test`. Each sets up its own venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-hanoi-upstream lint bench bench-peers venv clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,etcd,redis]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/flagstaff serve --seed examples/flags.json --login-link

lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# hanoi 0.0.4's own test files, downloaded (pip download) and run against the compatibility
# layer. Not part of `make test`, which never reaches the network (docs/compat.md).
test-hanoi-upstream: venv
	FLAGSTAFF_HANOI_SDIST=1 $(BIN)/pytest -q tests/compat/test_compat_hanoi_sdist.py

bench: venv
	$(BIN)/python benchmarks/run.py

# flagstaff beside GrowthBook, LaunchDarkly, Unleash, Flagsmith and OpenFeature+flagd, offline
# (docs/benchmarks.md). Installs the bench extra first: the peers are not in dev.
bench-peers: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_peers.py --plot bench-peers.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
