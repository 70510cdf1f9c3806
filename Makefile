# retail-elt: one command to run, one to test. `make` alone lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv comes from PATH, else from a private bootstrap venv in .tools/ (installed on first use).
UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PYTHON ?= python3
RUN := $(UV) run --frozen

# No telemetry (there may be no internet), Python as found on the machine, never downloaded.
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export RUNTIME__DLTHUB_TELEMETRY := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export UV_PYTHON_DOWNLOADS := never

SCALE ?= demo
# sqlfluff runs from the repository root (dbt_project/.sqlfluff explains why).
SQL_PATHS := dbt_project/models dbt_project/macros dbt_project/tests

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CURDIR)/.tools/bin/uv:
	@echo "uv not found: installing it into .tools/ (a private venv)"
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

.PHONY: install
install: .venv/.synced ## Install the project and its tools (uv, then the locked packages)

.PHONY: run
run: install ## Generate the demo drop when there is none, then run the whole pipeline once
	@if [ -z "$${PII_HASH_KEY:-}" ] && ! grep -qs '^PII_HASH_KEY=.' .env; then \
		echo "PII_HASH_KEY is not set: running in demo mode with the demo key (ELT_DEMO=1)"; \
		export ELT_DEMO=1; fi; \
	$(RUN) elt generate --scale $(SCALE) --if-missing && \
	$(RUN) elt run

.PHONY: test
test: install ## Run the test suite (starts its own PostgreSQL and S3 servers)
	$(RUN) pytest

.PHONY: lint
lint: install ## Lint Python (ruff) and SQL (sqlfluff)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) sqlfluff lint $(SQL_PATHS)

.PHONY: format
format: install ## Format Python and fix what sqlfluff can fix
	$(RUN) ruff check --fix .
	$(RUN) ruff format .
	$(RUN) sqlfluff fix $(SQL_PATHS)

.PHONY: docs
docs: install ## Generate the dbt docs and serve them on http://localhost:8080
	$(RUN) elt docs

.PHONY: serve
serve: install ## Serve the scheduled deployment on PREFECT_API_URL's server (weekly, Tuesday 12:45 Moscow time by default)
	$(RUN) elt serve

.PHONY: deploy
deploy: install ## Register prefect.yaml's weekly deployment on PREFECT_API_URL's server (then: prefect worker start --pool elt-pool)
	@$(RUN) python -c "from prefect.settings import get_current_settings as s; raise SystemExit(0 if s().api.url else 'make deploy needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)')"
	$(RUN) prefect work-pool create elt-pool --type process --overwrite
	ELT_SCHEDULE_CRON="$${ELT_SCHEDULE_CRON:-45 12 * * 2}" \
	ELT_SCHEDULE_TIMEZONE="$${ELT_SCHEDULE_TIMEZONE:-Europe/Moscow}" \
	$(RUN) prefect --no-prompt deploy --all

.PHONY: bench
bench: install ## Benchmark what users run (elt generate, elt run: full, a new day, nothing new) at demo, 1M and 10M sales, each stage beside a reference (writes bench/results/; 30-60 minutes on 2 cores)
	$(RUN) python -m bench

.PHONY: up
up: ## Start the full stack with Docker Compose (MinIO, Postgres, Prefect, Metabase)
	@test -f .env || { echo "No .env: copy .env.example to .env and set the secrets"; exit 1; }
	docker compose up -d --build

.PHONY: down
down: ## Stop the full stack (volumes are kept; `docker compose down -v` drops them)
	docker compose down

.PHONY: clean
clean: ## Remove generated data, the warehouse file, dbt artifacts and caches
	rm -rf data dbt_project/target dbt_project/logs .pytest_cache .ruff_cache bench/work
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
