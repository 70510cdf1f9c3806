"""The one way every stage reaches the lake: fsspec file systems for local folders and ``s3://``.

- :class:`Lake`: a lake root; paths relative to it, Parquet and JSON read and written whole.
- :func:`normalize_url`, :func:`is_local`, :func:`filesystem_for`, :func:`fs_path`,
  :func:`write_json`: URL plumbing for code that holds a file system of its own (dlt's).

Shared by the stages like :mod:`contract` (it imports no stage); the lake's layout (zones and
paths) is :mod:`contract.lake`'s.
"""

from storage.lake import Lake
from storage.urls import filesystem_for, fs_path, is_local, normalize_url, write_json

__all__ = ["Lake", "filesystem_for", "fs_path", "is_local", "normalize_url", "write_json"]
