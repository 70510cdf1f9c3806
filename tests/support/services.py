"""Real services for the tests: a throwaway PostgreSQL cluster and a local S3 server.

Both run on 127.0.0.1 only and are torn down at the end of the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: The role of the test cluster that authenticates with a password (the others: trust).
PASSWORD_ROLE = "elt_with_password"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> str | None:
    """Where ``initdb`` and ``pg_ctl`` live (they are often not on PATH on Debian)."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return os.path.dirname(candidates[0]) if candidates else None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def dsn(self, database: str = "postgres", user: str | None = None, password: str = "") -> str:
        auth = user or self.user
        if password:
            auth = f"{auth}:{password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        """A new database (empty, or a copy of ``template``); its DSN."""
        import uuid

        import psycopg2

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = psycopg2.connect(self.dsn())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                f'create database "{name}"' + (f' template "{template}"' if template else "")
            )
        conn.close()
        return self.dsn(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL cluster in a temp dir with trust auth on a free loopback port.

    As root, ``initdb`` refuses to run, so the cluster is created and run as ``postgres``.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) were not found")
    as_root = os.geteuid() == 0
    base = tempfile.mkdtemp(prefix="elt-pg-")
    data_dir = os.path.join(base, "data")
    prefix: list[str] = []
    if as_root:
        shutil.chown(base, user="postgres", group="postgres")
        os.chmod(base, 0o700)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    superuser = "postgres"
    subprocess.run(
        [
            *prefix,
            f"{bin_dir}/initdb",
            "-D",
            data_dir,
            "-U",
            superuser,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    # One role that must give its password (scram-sha-256): the tests of dbt's profile
    # check that the password read from ELT_POSTGRES_DSN is the right one.
    hba = os.path.join(data_dir, "pg_hba.conf")
    with open(hba, encoding="utf-8") as handle:
        rules = handle.read()
    with open(hba, "w", encoding="utf-8") as handle:
        handle.write(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{rules}")
    opts = (
        f"-h 127.0.0.1 -p {port} -k {base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        [
            *prefix,
            f"{bin_dir}/pg_ctl",
            "-D",
            data_dir,
            "-o",
            opts,
            "-l",
            os.path.join(base, "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer("127.0.0.1", port, superuser)
    finally:
        subprocess.run(
            [*prefix, f"{bin_dir}/pg_ctl", "-D", data_dir, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def storage_options(self) -> dict:
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def create_bucket(self, name: str, *, versioned: bool = False) -> None:
        """Create a bucket; ``versioned`` turns on object versioning, as the stack's MinIO has."""
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible HTTP server (moto's server mode) on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
