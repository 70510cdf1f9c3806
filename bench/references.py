"""The references: the same work as each stage of a run, on the same files, by the plainest
fast tool.

- drop -> lake: DuckDB reading the drop's sales CSVs and writing Parquet;
- preprocessing: DuckDB SQL (:mod:`bench.reference_sql`) writing the same four outputs;
- generate: DuckDB reading and rewriting the same sales CSVs gzip-compressed (an I/O floor);
- lake -> warehouse: DuckDB ``create table as select * from read_parquet`` (DuckDB) and
  ``psql \\copy`` into unlogged tables (Postgres), of the same lake files the run loaded; and
  pandas ``DataFrame.to_sql`` (what most pipelines do) on a sample;
- dbt build: the SQL the run's dbt compiled, run directly in the warehouse (no dbt).

Each runs in a fresh process (``python -m bench.references SPEC.json OUT.json``, see
:func:`measure_reference`) and returns ``{"seconds": ..., "rows": ..., "info": {...}}``;
``seconds`` covers the reference's work only (setup such as writing CSV files for COPY, or
dropping what dbt built, is reported separately or not at all).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench import reference_sql
from bench.measure import Measurement, measure_process
from bench.reference_sql import lake_files, sql_list
from contract.warehouse import RAW_SALES, RAW_SHOP

logger = logging.getLogger(__name__)

Result = dict[str, Any]

#: The lake files the lake -> warehouse stage loads, per warehouse table.
LOAD_TABLES: dict[str, str] = {
    "stores": "raw/stores/*.parquet",
    "products": "raw/products/*.parquet",
    "customers": "raw/customers/*.parquet",
    "delivered_files": "raw/delivered_files/*.parquet",
    "daily_sales": "preprocessed/daily_sales/*/*.parquet",
    "customer_monthly": "preprocessed/customer_monthly/*/*.parquet",
    "file_quality": "preprocessed/file_quality/*.parquet",
}


def _connect(threads: int, path: str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute(f"set threads = {int(threads)}")
    con.execute("set preserve_insertion_order = false")
    return con


def _readable_sales_files(drop_dir: str) -> list[str]:
    """The drop's sales files the generator made readable (DuckDB cannot skip the rest)."""
    manifest = json.loads(Path(f"{drop_dir}.manifest.json").read_text(encoding="utf-8"))
    files = manifest.get("files", {})
    return [
        os.path.join(drop_dir, name)
        for name in sorted(files)
        if files[name].get("readable", True) and os.path.exists(os.path.join(drop_dir, name))
    ]


def _copy_sales(drop_dir: str, out_dir: str, *, threads: int, select: str, to: str) -> Result:
    """Time DuckDB copying the drop's readable sales CSVs (``select ... from <csv>``) to ``to``."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files = _readable_sales_files(drop_dir)
    source = (
        f"read_csv({sql_list(files)}, all_varchar = true, header = true, "
        "ignore_errors = true, filename = true, union_by_name = false)"
    )
    con = _connect(threads)
    started = time.perf_counter()
    rows = con.execute(f"copy ({select} from {source}) to {to}").fetchone()[0]
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows": int(rows), "info": {"files": len(files)}}


def generate_reference(drop: str, out: str, threads: int) -> Result:
    """Read the drop's sales CSVs and write them again gzip-compressed (the I/O floor)."""
    return _copy_sales(
        drop,
        out,
        threads=threads,
        select="select * exclude (filename)",
        to=f"'{out}/sales.csv.gz' (header, compression gzip)",
    )


def extract_reference(drop: str, out: str, threads: int) -> Result:
    """Read the drop's sales CSVs as text and write them as Parquet (drop -> lake's core)."""
    return _copy_sales(
        drop, out, threads=threads, select="select *", to=f"'{out}/sales.parquet' (format parquet)"
    )


def preprocess_reference(lake: str, out: str, timezone: str, threads: int) -> Result:
    """The Dask stage's job in DuckDB SQL, from the lake's raw zone (see
    :func:`bench.reference_sql.write_outputs`)."""
    return reference_sql.write_outputs(lake, out, timezone=timezone, threads=threads)


def load_duckdb_reference(lake: str, duckdb_path: str, threads: int) -> Result:
    """Create one DuckDB table per lake table from the same Parquet files the run loaded."""
    con = _connect(threads, duckdb_path)
    per_table: dict[str, int] = {}
    started = time.perf_counter()
    for table, pattern in LOAD_TABLES.items():
        files = lake_files(lake, pattern)
        if not files:
            continue
        con.execute(
            f"create table {table} as select * from read_parquet({sql_list(files)}, "
            "union_by_name = true, hive_partitioning = false)"
        )
        per_table[table] = int(con.execute(f"select count(*) from {table}").fetchone()[0])
    con.execute("checkpoint")
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows": sum(per_table.values()), "info": {"tables": per_table}}


_PG_TYPES = (
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double precision"),
    (pa.types.is_decimal, "numeric"),
    (pa.types.is_date, "date"),
    (lambda t: pa.types.is_timestamp(t) and t.tz is not None, "timestamptz"),
    (pa.types.is_timestamp, "timestamp"),
)


def _pg_type(arrow_type: pa.DataType) -> str:
    for check, name in _PG_TYPES:
        if check(arrow_type):
            return name
    return "text"


def _csv_ready(table: pa.Table) -> pa.Table:
    """Nested or binary columns become JSON/text so the CSV writer takes them."""
    columns = []
    for name in table.column_names:
        column = table[name]
        if pa.types.is_nested(column.type) or pa.types.is_binary(column.type):
            column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()])
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def load_postgres_reference(lake: str, postgres_dsn: str, out: str) -> Result:
    """``psql \\copy`` of the same lake rows into unlogged tables (CSV written beforehand).

    Returns:
        Seconds of the COPY (the ``psql`` run), rows, rows per table, and the seconds spent
        writing the CSV files (not counted).
    """
    Path(out).mkdir(parents=True, exist_ok=True)
    prep_started = time.perf_counter()
    ddl: list[str] = []
    copies: list[str] = []
    per_table: dict[str, int] = {}
    for table, pattern in LOAD_TABLES.items():
        files = lake_files(lake, pattern)
        if not files:
            continue
        data = pa.concat_tables(
            [pq.read_table(f) for f in files], promote_options="permissive"
        ).combine_chunks()
        data = _csv_ready(data)
        csv_path = os.path.join(out, f"{table}.csv")
        pacsv.write_csv(data, csv_path)
        cols = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in data.schema)
        ddl.append(f'create unlogged table "{table}" ({cols});')
        copies.append(f"\\copy \"{table}\" from '{csv_path}' with (format csv, header true)")
        per_table[table] = data.num_rows
    prep_seconds = time.perf_counter() - prep_started
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", postgres_dsn]
    subprocess.run([*psql, "-c", "\n".join(ddl)], check=True, capture_output=True)
    script = os.path.join(out, "copy.sql")
    Path(script).write_text("\n".join(copies) + "\n", encoding="utf-8")
    started = time.perf_counter()
    subprocess.run([*psql, "-f", script], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": sum(per_table.values()),
        "info": {"tables": per_table, "csv_prep_seconds": prep_seconds},
    }


def to_sql_reference(lake: str, postgres_dsn: str, sample_rows: int) -> Result:
    """pandas ``DataFrame.to_sql`` (SQLAlchemy, default inserts) of a sample of daily sales."""
    import sqlalchemy

    tables = []
    n = 0
    for f in lake_files(lake, LOAD_TABLES["daily_sales"]):
        if n >= sample_rows:
            break
        t = pq.read_table(f)
        tables.append(t)
        n += t.num_rows
    frame = pa.concat_tables(tables).slice(0, sample_rows).to_pandas()
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = sqlalchemy.create_engine(url)
    started = time.perf_counter()
    frame.to_sql("to_sql_sample", engine, if_exists="replace", index=False, chunksize=10_000)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "rows": len(frame), "info": {"method": "to_sql default"}}


def _node_statement(node: dict[str, Any], code: str) -> str | None:
    """The plain SQL of one built node: a view, a table, a snapshot's first table, a test's
    count; None for what dbt builds otherwise (seeds, operations)."""
    kind = node["resource_type"]
    materialized = node["config"].get("materialized")
    relation = node.get("relation_name")
    if kind == "model" and materialized == "view":
        return f"create or replace view {relation} as {code}"
    if kind == "model" and materialized in ("table", "incremental"):
        return f"create table {relation} as {code}"
    if kind == "snapshot":
        updated_at = node["config"].get("updated_at") or "current_timestamp"
        return (
            f"create table {relation} as select *, md5(cast(random() as text)) as dbt_scd_id, "
            f"{updated_at} as dbt_updated_at, {updated_at} as dbt_valid_from, "
            f"cast(null as timestamp) as dbt_valid_to from ({code}) as snap"
        )
    if kind == "test":
        return f"select count(*) from ({code}) as dbt_test"
    return None


def compiled_statements(artifacts: str) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The statements of a dbt build, in its order, from its ``manifest.json`` and
    ``run_results.json``; and the schemas its models and snapshots live in (name parts)."""
    manifest = json.loads(Path(artifacts, "manifest.json").read_text(encoding="utf-8"))
    results = json.loads(Path(artifacts, "run_results.json").read_text(encoding="utf-8"))
    statements: list[tuple[str, str]] = []
    schemas: list[list[str]] = []
    for item in results["results"]:
        node = manifest["nodes"].get(item["unique_id"])
        code = item.get("compiled_code") or (node or {}).get("compiled_code")
        if node is None or not code:
            continue
        relation = node.get("relation_name")
        if node["resource_type"] in ("model", "snapshot") and relation:
            parts = [p.strip('"') for p in relation.split(".")][:-1]
            if parts not in schemas and parts[-1] not in (RAW_SHOP, RAW_SALES):
                schemas.append(parts)
        if (sql := _node_statement(node, code)) is not None:
            statements.append((item["unique_id"], sql))
    return statements, schemas


def _warehouse_session(
    target: str, duckdb_path: str | None, postgres_dsn: str | None, threads: int
) -> tuple[Callable[[str], None], Callable[[], None], str | None]:
    """``(run, close, dbname)`` on the warehouse copy: DuckDB, or Postgres (autocommit)."""
    if target == "duckdb":
        con = _connect(threads, str(duckdb_path))

        def run(sql: str) -> None:
            con.execute(sql).fetchall()

        return run, con.close, None
    import psycopg2

    pg = psycopg2.connect(str(postgres_dsn))
    pg.autocommit = True
    cur = pg.cursor()
    return cur.execute, pg.close, pg.get_dsn_parameters()["dbname"]


def dbt_sql_reference(
    artifacts: str,
    target: str,
    threads: int,
    duckdb_path: str | None = None,
    postgres_dsn: str | None = None,
    dbt_database: str | None = None,
) -> Result:
    """Run, in order, the SQL the run's dbt build compiled, on a copy of its warehouse: the
    models and snapshots as tables or views, every data test as a count; dbt itself (parsing,
    Jinja, adapter) is not involved. What dbt built is dropped first (not timed), so the copy
    starts as the load left it.

    Args:
        artifacts: A copy of the build's ``manifest.json`` and ``run_results.json``.
        target: ``duckdb`` or ``postgres``.
        threads: DuckDB threads.
        duckdb_path: A copy of the run's warehouse, named as the one dbt built (DuckDB).
        postgres_dsn: A copy of the run's warehouse database (Postgres).
        dbt_database: The database name in dbt's relation names, replaced by this copy's
            (Postgres).

    Returns:
        Seconds, the number of statements run, and the nodes that could not be run.
    """
    statements, schemas = compiled_statements(artifacts)
    run, close, dbname = _warehouse_session(target, duckdb_path, postgres_dsn, threads)
    if dbt_database and dbname:
        statements = [
            (uid, sql.replace(f'"{dbt_database}".', f'"{dbname}".')) for uid, sql in statements
        ]
    names = [
        ".".join(f'"{p}"' for p in (parts if target == "duckdb" else parts[-1:]))
        for parts in schemas
    ]
    for name in names:
        run(f"drop schema if exists {name} cascade")
    failed: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        run(f"create schema if not exists {name}")
    for uid, sql in statements:
        try:
            run(sql)
        except Exception as exc:  # report, go on: a partial reference is flagged
            failed[uid] = str(exc).splitlines()[0][:200]
    seconds = time.perf_counter() - started
    close()
    return {
        "seconds": seconds,
        "rows": 0,
        "info": {"statements": len(statements), "failed": failed},
    }


REFERENCES: dict[str, Callable[..., Result]] = {
    "generate": generate_reference,
    "extract": extract_reference,
    "preprocess": preprocess_reference,
    "load_duckdb": load_duckdb_reference,
    "load_postgres": load_postgres_reference,
    "to_sql": to_sql_reference,
    "dbt": dbt_sql_reference,
}


def measure_reference(
    name: str,
    args: dict[str, Any],
    *,
    scratch: Path,
    env: dict[str, str],
    timeout: float | None,
) -> Measurement:
    """Run the reference ``name`` (a key of :data:`REFERENCES`) with ``args`` in a fresh
    process; its own seconds, the process tree's peak RSS, its rows and info."""
    scratch.mkdir(parents=True, exist_ok=True)
    tag = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
    spec, out = scratch / f"{tag}.spec.json", scratch / f"{tag}.out.json"
    spec.write_text(json.dumps({"reference": name, "args": args}), encoding="utf-8")
    command = [sys.executable, "-m", "bench.references", str(spec), str(out)]
    run = measure_process(command, env=env, log_path=scratch / f"{tag}.log", timeout=timeout)
    result = json.loads(out.read_text(encoding="utf-8"))
    spec.unlink()
    out.unlink()
    return Measurement(
        seconds=float(result["seconds"]),
        peak_rss_bytes=run.peak_rss_bytes,
        rows=int(result["rows"]),
        info=result.get("info", {}),
    )


def main(argv: list[str]) -> int:
    """Run the reference of the spec file ``argv[0]``; write its result to ``argv[1]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = REFERENCES[spec["reference"]](**spec["args"])
    Path(argv[1]).write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
