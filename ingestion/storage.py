"""fsspec and dlt plumbing shared by both pipelines: URLs, file systems, credentials."""

from __future__ import annotations

import json
import logging
import os
import posixpath
from typing import Any
from urllib.parse import urlsplit

import fsspec
from dlt.common.configuration.specs import AwsCredentials
from fsspec import AbstractFileSystem

logger = logging.getLogger(__name__)


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


def dlt_filesystem_credentials(
    url: str, storage_options: dict[str, Any] | None
) -> AwsCredentials | None:
    """dlt credentials for the filesystem destination, from fsspec storage options.

    Args:
        url: the lake URL.
        storage_options: s3fs-style options (``key``, ``secret``, ``client_kwargs``
            with ``endpoint_url`` and ``region_name``).

    Returns:
        ``AwsCredentials`` for ``s3://`` URLs, None for local paths.

    Raises:
        ValueError: for protocols other than local and s3.
    """
    if is_local(url):
        return None
    scheme = urlsplit(url).scheme
    if scheme not in ("s3", "s3a"):
        raise ValueError(f"unsupported lake protocol {scheme!r}: use a local path or s3://")
    options = storage_options or {}
    client_kwargs = options.get("client_kwargs") or {}
    credentials = AwsCredentials()
    credentials.aws_access_key_id = options.get("key")
    credentials.aws_secret_access_key = options.get("secret")
    credentials.aws_session_token = options.get("token")
    credentials.endpoint_url = client_kwargs.get("endpoint_url") or options.get("endpoint_url")
    credentials.region_name = client_kwargs.get("region_name") or "us-east-1"
    return credentials


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
    return fs._strip_protocol(normalize_url(url))
