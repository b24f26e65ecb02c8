# The two commands: `make up` runs the whole system locally; `make test` runs every test.
# Both install what the machine lacks first (ci/install-deps.sh).

CARGO ?= cargo

.PHONY: up test deps lint fmt

up: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) run --quiet -p harness -- up

test: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

deps:
	@bash ci/install-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
