# churnguard. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
STORES ?= 5
PROMETHEUS_TEST := every_panel_and_rule_runs_on_a_real_prometheus_scraping_churnguard_local

.PHONY: help run test test-faults lint layering bench build clean-data

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## Run the main job: every service in one process on the embedded log (./data/log) and a private Redis, fed by a simulated chain of $(STORES) stores (with 12 weeks of history on the first start), or with HISTORY=FILE by the import of FILE (CDNOW or .csv) and a refit; Ctrl-C stops it
	HISTORY="$(HISTORY)" scripts/run-local.sh --simulate-stores $(STORES)

test: ## Install what is missing, then run every test against a real broker (Tansu) and Redis, then check the alert rules and dashboards (promtool)
	scripts/with-infra.sh cargo test --workspace --locked -- --skip $(PROMETHEUS_TEST)
	@# The real-Prometheus dashboard test on its own, so that the counts it prints show.
	scripts/with-infra.sh cargo test --locked -p churnguard-local --test prometheus -- --nocapture $(PROMETHEUS_TEST)
	scripts/check-observability.sh

test-faults: ## The fault tests at full size (ten times the swipes `make test` sends), with their counts: scorers killed, a zombie scorer, Redis paused and restarted empty, store clocks hours off, feedback killed between append and projection
	CHURNGUARD_FAULTS_FULL=1 scripts/with-infra.sh cargo test --locked -p churn-scoring --test faults --test kill -- --nocapture --test-threads 1
	CHURNGUARD_FAULTS_FULL=1 scripts/with-infra.sh cargo test --locked -p churnguard-e2e --test clock_skew -- --nocapture
	scripts/with-infra.sh cargo test --locked -p feedback --test kill -- --nocapture --test-threads 1

lint: ## rustfmt, clippy -D warnings, the layering rule, buf lint and buf breaking against main
	scripts/lint.sh

layering: ## Fail if the domain crate depends on an I/O crate, or the runtime crate on a service
	cargo test --locked -p churnguard-e2e --test layering

bench: ## Throughput benchmarks with the physical limit measured in the same run, appended to BENCHMARKS.md with the date, commit and machine
	scripts/bench.sh

build: ## Build everything
	cargo build --workspace --locked

clean-data: ## Delete the embedded log written by `make run`
	rm -rf data
