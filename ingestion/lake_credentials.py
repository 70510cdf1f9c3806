"""dlt's credentials for the lake, from the fsspec options the settings give."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dlt.common.configuration.specs import AwsCredentials

from storage import is_local


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
    return AwsCredentials(
        aws_access_key_id=options.get("key"),
        aws_secret_access_key=options.get("secret"),
        aws_session_token=options.get("token"),
        endpoint_url=client_kwargs.get("endpoint_url") or options.get("endpoint_url"),
        region_name=client_kwargs.get("region_name") or "us-east-1",
    )
