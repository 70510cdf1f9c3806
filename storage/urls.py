"""URLs and file systems: local folders and ``s3://`` reached the same way through fsspec."""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec import AbstractFileSystem


def is_local(url: str) -> bool:
    """Whether a URL is a local path (plain path or ``file://``).

    Args:
        url: any fsspec URL or path.

    Returns:
        True for local paths.
    """
    scheme = urlsplit(url).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def normalize_url(url: str) -> str:
    """Make local paths absolute (without a scheme) and strip trailing slashes.

    Args:
        url: a local path, ``file://`` URL or object-store URL.

    Returns:
        The URL dlt and fsspec are given.
    """
    if is_local(url):
        path = url[len("file://") :] if url.startswith("file://") else url
        return os.path.abspath(os.path.expanduser(path))
    return url.rstrip("/")


def filesystem_for(url: str, storage_options: dict[str, Any] | None) -> AbstractFileSystem:
    """An fsspec file system for a URL.

    Args:
        url: the URL (its protocol picks the implementation).
        storage_options: fsspec options (s3fs: ``key``, ``secret``, ``client_kwargs``).

    Returns:
        The file system instance.
    """
    fs, _ = fsspec.core.url_to_fs(normalize_url(url), **(storage_options or {}))
    return fs


def write_json(fs: AbstractFileSystem, path: str, payload: dict[str, Any]) -> None:
    """Write a small JSON document through fsspec.

    Args:
        fs: the file system.
        path: the target path (in ``fs``'s own form).
        payload: the JSON object.
    """
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, ensure_ascii=False, indent=2, default=str)


def fs_path(fs: AbstractFileSystem, url: str) -> str:
    """The path of a URL in ``fs``'s own form (no protocol).

    Args:
        fs: the file system.
        url: the URL.

    Returns:
        The stripped path.
    """
    del fs  # kept for callers that hold one; the path does not depend on it
    return fsspec.core.strip_protocol(normalize_url(url))
