"""The test services themselves work: a real Postgres and a real S3 server on loopback."""

import fsspec
import psycopg2


def test_postgres_fixture_is_a_real_server(postgres_dsn: str) -> None:
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("create table t (x int); insert into t values (1), (2); select sum(x) from t")
        assert cur.fetchone()[0] == 3
        cur.execute("show server_version_num")
        assert int(cur.fetchone()[0]) >= 140000


def test_s3_fixture_round_trips_bytes(s3, s3_bucket: str) -> None:
    fs = fsspec.filesystem("s3", **s3.storage_options())
    fs.pipe(f"{s3_bucket}/a/b.txt", b"hello")
    assert fs.cat(f"{s3_bucket}/a/b.txt") == b"hello"
    assert fs.ls(f"{s3_bucket}/a") == [f"{s3_bucket}/a/b.txt"]
