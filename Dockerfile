# The project's image: the `elt` command with every stage, used by the Prefect server and
# worker and by the one-shot services of docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DO_NOT_TRACK=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    RUNTIME__DLTHUB_TELEMETRY=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client curl \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir uv

WORKDIR /app
# Dependencies first (a layer that changes only with the lock file).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY contract ./contract
COPY storage ./storage
COPY elt_settings ./elt_settings
COPY generator ./generator
COPY ingestion ./ingestion
COPY dask_preprocess ./dask_preprocess
COPY orchestration ./orchestration
COPY metabase ./metabase
COPY report ./report
COPY dbt_project ./dbt_project
COPY prefect.yaml ./
RUN uv sync --frozen --no-dev

RUN useradd --create-home --uid 1000 elt && chown -R elt /app
USER elt
ENTRYPOINT ["elt"]
CMD ["--help"]
