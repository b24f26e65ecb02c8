# The two commands: `make up` runs the whole system locally; `make test` runs every test.
# Both install what the machine lacks first (ci/install-deps.sh).

CARGO ?= cargo

# Labels the containers of this make's tests, so that ci/no-containers-left.sh checks its own.
ifndef HARNESS_SESSION
HARNESS_SESSION := make-$(shell cat /proc/sys/kernel/random/uuid)
endif
export HARNESS_SESSION

.PHONY: up up-fresh down test test-native test-other test-moto nextest schemathesis compose-smoke load soak deps lint lint-infra fmt

# Data (PostgreSQL) is kept across runs; `up-fresh` starts from empty; `down` stops a running
# `up` and removes what it keeps (data directory, Docker volume, stray containers).
up: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) run --quiet -p harness -- up

up-fresh: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) run --quiet -p harness -- up --fresh

down:
	$(CARGO) run --quiet -p harness -- down

# The harness picks containers when a Docker engine answers (native processes otherwise); with
# Docker, compose.yaml is then checked end to end and no container may be left behind.
test: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	@bash ci/no-containers-left.sh
	@if docker info >/dev/null 2>&1; then bash ci/compose-smoke.sh; fi

# The harness self-tests and the acceptance suite on the other backend.
test-native: deps
	HARNESS_BACKEND=native $(CARGO) test --no-fail-fast -p harness -p acceptance

# Every test with moto instead of LocalStack (HARNESS_SQS=moto make test also works).
test-moto: deps
	HARNESS_SQS=moto $(CARGO) test --workspace --no-fail-fast

# CI's second pass: the other backend (native) and the other SQS emulator (moto), under
# cargo nextest (one set of dependencies for the run; JUnit in target/nextest/ci/junit.xml).
test-other: deps
	$(CARGO) build --quiet --workspace --bins
	HARNESS_BACKEND=native HARNESS_SQS=moto $(CARGO) nextest run --profile ci -p harness -p acceptance
	@bash ci/no-containers-left.sh

# Every test under cargo nextest.
nextest: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) nextest run --workspace
	@bash ci/no-containers-left.sh

# Both OpenAPI documents fuzzed by schemathesis (--checks all) against running services.
schemathesis: deps
	$(CARGO) build --quiet --workspace --bins
	bash ci/schemathesis.sh

compose-smoke:
	$(CARGO) build --quiet --workspace --bins
	bash ci/compose-smoke.sh

# Every load scenario against the platform started in-process (release build), beside ceilings
# measured in the same run. Reports: target/load/ (summary.json, goose HTML per run).
load: deps
	$(CARGO) run --release --quiet -p load -- all

# The soak test (not in CI): SOAK_MINUTES (default 10) of steady mixed load with every retention
# window shortened, the two services as their own processes (release binaries). Fails, naming
# the series, if a table, a service's memory or connections, Redis's memory or a backlog keeps
# growing once the windows have elapsed. `make soak SOAK_MINUTES=2` is a quick look at the
# machinery; judging needs about 7 minutes. Plot: target/load/soak.svg (README: Soak test).
SOAK_MINUTES ?= 10
soak: deps
	$(CARGO) build --release --quiet -p ledger -p consolidation -p load --bins
	SOAK_MINUTES=$(SOAK_MINUTES) $(CARGO) run --release --quiet -p load -- soak

deps:
	@bash ci/install-deps.sh

# Offline validators of the deployment: terraform fmt/validate + checkov, kustomize + Kubernetes
# schemas, promtool, dashboards, workflows, and the consistency of names across all of them.
lint-infra:
	bash ci/lint-infra.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
