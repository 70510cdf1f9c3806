#!/usr/bin/env bash
# Runs once, on the first start of the postgres container (docker-entrypoint-initdb.d).
# Creates the warehouse (roles elt and metabase_reader, schemas) and the application
# databases of Prefect and Metabase, each with its own owner.
set -euo pipefail

psql_super() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" "$@"; }

psql_super --dbname postgres <<SQL
create role prefect login password '${PREFECT_DB_PASSWORD}';
create database prefect owner prefect;
create role metabase login password '${MB_DB_PASSWORD}';
create database metabase owner metabase;
create database elt;
revoke connect on database prefect from public;
revoke connect on database metabase from public;
SQL

psql_super --dbname elt \
    -v loader_password="${ELT_LOADER_PASSWORD}" \
    -v reader_password="${MB_WAREHOUSE_PASSWORD}" \
    -f "${WAREHOUSE_SQL:-/opt/elt/warehouse.sql}"
