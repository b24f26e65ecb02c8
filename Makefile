# The two commands: `make up` runs the whole system locally; `make test` runs every test.
# Both install what the machine lacks first (ci/install-deps.sh).

CARGO ?= cargo

.PHONY: up test load deps lint fmt

up: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) run --quiet -p harness -- up

test: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

# Every load scenario against the platform started in-process (release build), beside ceilings
# measured in the same run. Reports: target/load/ (summary.json, goose HTML per run).
load: deps
	$(CARGO) run --release --quiet -p load -- all

deps:
	@bash ci/install-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
