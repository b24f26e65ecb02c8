# The two commands: `make up` runs the whole system locally; `make test` runs every test.
# Both install what the machine lacks first (ci/install-deps.sh): Debian packages at once, the
# venvs and container images in the background while cargo compiles; `ready` waits for them.

CARGO ?= cargo

# Labels the containers of this make's tests, so that ci/no-containers-left.sh checks its own.
ifndef HARNESS_SESSION
HARNESS_SESSION := make-$(shell cat /proc/sys/kernel/random/uuid)
endif
export HARNESS_SESSION

.PHONY: ready up up-fresh down test test-other schemathesis compose-smoke load soak deps lint lint-infra fmt

# Data (PostgreSQL) is kept across runs; `up-fresh` starts from empty; `down` stops a running
# `up` and removes what it keeps (data directory, Docker volume, stray containers).
READY = @bash ci/install-deps.sh --wait

up: deps
	$(CARGO) build --quiet --workspace --bins
	$(READY)
	$(CARGO) run --quiet -p harness -- up

up-fresh: deps
	$(CARGO) build --quiet --workspace --bins
	$(READY)
	$(CARGO) run --quiet -p harness -- up --fresh

down:
	$(CARGO) run --quiet -p harness -- down

# Every test, under cargo nextest: one set of dependencies serves the whole run (its setup
# script, .config/nextest.toml), tests of every crate run side by side. The harness picks
# containers when a Docker engine answers (native processes otherwise; HARNESS_BACKEND and
# HARNESS_SQS=localstack|moto choose); no container of the run may be left behind.
# NEXTEST_PROFILE=ci adds JUnit (target/nextest/ci/junit.xml).
test: deps
	$(CARGO) build --quiet --workspace --bins
	$(CARGO) test --quiet --workspace --no-run
	$(READY)
	$(CARGO) nextest run --workspace
	@bash ci/no-containers-left.sh

# CI's second pass: the other runner (cargo test: a stack per test binary), the other backend
# (native processes) and the other SQS emulator (moto), on the harness self-tests and the
# acceptance suite.
test-other: deps
	$(CARGO) test --quiet --no-run -p harness -p acceptance
	$(READY)
	HARNESS_BACKEND=native HARNESS_SQS=moto $(CARGO) test --no-fail-fast -p harness -p acceptance
	@bash ci/no-containers-left.sh

# Both OpenAPI documents fuzzed by schemathesis (--checks all) against running services.
schemathesis: deps
	$(CARGO) build --quiet --workspace --bins
	$(READY)
	bash ci/schemathesis.sh

# compose.yaml end to end (needs Docker): images, up, an entry and its balance, down.
compose-smoke: deps
	$(CARGO) build --quiet --workspace --bins
	$(READY)
	bash ci/compose-smoke.sh

# Every load scenario against the platform started in-process (release build), beside ceilings
# measured in the same run; then cost (CPU per request of each process at fixed rates, one
# replica of each service as a process) and sla-under-fire (two replicas of each service as
# processes, release binaries, behind the nginx gateway, with faults). Reports: target/load/ (summary.json,
# sla-under-fire.md/.json, goose HTML per run). Fails naming every bound missed.
load: deps
	$(CARGO) build --release --quiet -p ledger -p consolidation -p load --bins
	$(READY)
	$(CARGO) run --release --quiet -p load -- all

# The soak test (not in CI): SOAK_MINUTES (default 10) of steady mixed load with every retention
# window shortened, the two services as their own processes (release binaries). Fails, naming
# the series, if a table, a service's memory or connections, Redis's memory or a backlog keeps
# growing once the windows have elapsed. `make soak SOAK_MINUTES=2` is a quick look at the
# machinery; judging needs about 7 minutes. Plot: target/load/soak.svg (docs/load.md: Soak test).
SOAK_MINUTES ?= 10
soak: deps
	$(CARGO) build --release --quiet -p ledger -p consolidation -p load --bins
	$(READY)
	SOAK_MINUTES=$(SOAK_MINUTES) $(CARGO) run --release --quiet -p load -- soak

deps:
	@bash ci/install-deps.sh

ready:
	$(READY)

# Offline validators of the deployment: terraform fmt/validate + checkov, kustomize + Kubernetes
# schemas, promtool, dashboards, workflows, and the consistency of names across all of them.
lint-infra:
	bash ci/lint-infra.sh

# With CLIPPY_ARGS set (.ci/run makes clippy the workspace's compiler), a build of every target is
# the clippy run, and leaves behind what `make test` runs.
lint:
	$(CARGO) fmt --all -- --check
ifdef CLIPPY_ARGS
	$(CARGO) build --workspace --all-targets
else
	$(CARGO) clippy --workspace --all-targets -- -D warnings
endif

fmt:
	$(CARGO) fmt --all
