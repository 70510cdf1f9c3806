"""Small fsspec helpers for the lake: one object per lake root, any fsspec URL.

Everything the stage reads or writes goes through :class:`Lake`, so that a local folder,
``file://`` and ``s3://`` behave the same. Paths handed around between tasks are plain strings
relative to the lake root, so a :class:`Lake` can be rebuilt cheaply on a Dask worker.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

logger = logging.getLogger(__name__)


@dataclass
class Lake:
    """A lake root reached through fsspec.

    Args:
        url: The lake root, any fsspec URL (a local path, ``file://...``, ``s3://bucket/prefix``).
        storage_options: Options for the fsspec filesystem (credentials, ``endpoint_url``...).
    """

    url: str
    storage_options: dict[str, Any] | None = None
    fs: fsspec.AbstractFileSystem = field(init=False, repr=False)
    root: str = field(init=False)

    def __post_init__(self) -> None:
        self.fs, root = url_to_fs(self.url, **(self.storage_options or {}))
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        """The filesystem path of a location relative to the lake root.

        Args:
            *parts: Path segments below the lake root.

        Returns:
            The path as the filesystem expects it (no protocol).
        """
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def exists(self, rel: str) -> bool:
        """Whether a file or folder exists below the lake root."""
        return bool(self.fs.exists(self.path(rel)))

    def list_files(self, rel: str, suffix: str = ".parquet") -> list[tuple[str, int]]:
        """All files below a folder (any depth) ending in ``suffix``, with their sizes.

        Args:
            rel: The folder relative to the lake root.
            suffix: The file-name ending to keep.

        Returns:
            Sorted ``(path relative to the lake root, size in bytes)`` pairs; empty when the
            folder does not exist.
        """
        base = self.path(rel)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        out: list[tuple[str, int]] = []
        for full, info in found.items():
            if info.get("type") == "directory" or not full.endswith(suffix):
                continue
            out.append((self._relative(full), int(info.get("size") or 0)))
        return sorted(out)

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the immediate sub-folders of a folder (empty when it does not exist)."""
        base = self.path(rel)
        try:
            entries = self.fs.ls(base, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )

    def _relative(self, full: str) -> str:
        full = full.rstrip("/")
        prefix = self.root + "/"
        if full.startswith(prefix):
            return full[len(prefix) :]
        # Some filesystems strip a leading slash in listings.
        stripped = prefix.lstrip("/")
        if full.startswith(stripped):
            return full[len(stripped) :]
        return full

    def read_table(self, rel: str, columns: list[str] | None = None, **kwargs: Any) -> pa.Table:
        """Read one Parquet file (or a folder of them) relative to the lake root.

        Args:
            rel: The file or folder relative to the lake root.
            columns: Columns to read (all when None).
            **kwargs: More arguments for :func:`pyarrow.parquet.read_table` (``filters``...).

        Returns:
            The table.
        """
        return pq.read_table(self.path(rel), columns=columns, filesystem=self.fs, **kwargs)

    def read_tables(
        self, rels: list[str], columns: list[str] | None = None, **kwargs: Any
    ) -> pa.Table:
        """Read several Parquet files relative to the lake root as one table.

        Args:
            rels: The files relative to the lake root.
            columns: Columns to read (all when None).
            **kwargs: More arguments for :func:`pyarrow.parquet.read_table`; ``filters`` skip
                the row groups whose statistics exclude them.

        Returns:
            The table.
        """
        paths = [self.path(r) for r in rels]
        return pq.read_table(paths, columns=columns, filesystem=self.fs, **kwargs)

    def write_table(self, rel: str, table: pa.Table, row_group_size: int | None = None) -> None:
        """Write a table as one Parquet file, replacing the file if it exists.

        The bytes are produced in memory and written in one go, so a reader never sees a
        half-written file on an object store.

        Args:
            rel: The file relative to the lake root.
            table: The table to write.
            row_group_size: Rows per row group (pyarrow's default when None); small row
                groups of sorted data let readers skip what a filter excludes.
        """
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=row_group_size)
        full = self.path(rel)
        parent = full.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(full, "wb") as fh:
            fh.write(buf.getvalue())

    def read_json(self, rel: str) -> Any:
        """Read a JSON document relative to the lake root (None when it does not exist)."""
        if not self.exists(rel):
            return None
        with self.fs.open(self.path(rel), "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))

    def write_json(self, rel: str, value: Any) -> None:
        """Write a JSON document relative to the lake root, replacing it."""
        full = self.path(rel)
        self.fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(full, "wb") as fh:
            fh.write(json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))

    def delete(self, rel: str, recursive: bool = False) -> None:
        """Delete a file or folder relative to the lake root; nothing happens when absent."""
        full = self.path(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=recursive)
