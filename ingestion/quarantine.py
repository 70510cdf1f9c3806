"""The lake's quarantine zone for delivered files that could not be read."""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Any

from fsspec import AbstractFileSystem

from contract.lake import QUARANTINE_FILES
from storage import write_json

#: Kinds whose files hold personal data: their bytes are never copied to the quarantine.
PII_KINDS = frozenset({"stores", "customers"})


class Quarantine:
    """Writes unreadable files into the lake's ``quarantine/files/<kind>/`` zone."""

    def __init__(self, fs: AbstractFileSystem, lake_root: str) -> None:
        self.fs = fs
        self.root = posixpath.join(lake_root, QUARANTINE_FILES)

    def _paths(self, kind: str, file_name: str) -> tuple[str, str]:
        target = posixpath.join(self.root, kind, posixpath.basename(file_name))
        return target, f"{target}.reason.json"

    def put(
        self, kind: str, file_name: str, data: bytes | None, reason: str, modified: dt.datetime
    ) -> None:
        """Quarantine a file: its reason, and its bytes unless it holds personal data, was not
        read (``data`` None: a link out of the drop), or has columns the contract does not
        name (a wrong header: they may hold anything)."""
        target, reason_path = self._paths(kind, file_name)
        unknown_columns = reason.startswith("wrong_header")
        keep_bytes = kind not in PII_KINDS and data is not None and not unknown_columns
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if keep_bytes:
            self.fs.pipe_file(target, data)
        elif self.fs.exists(target):
            self.fs.rm(target)
        payload: dict[str, Any] = {
            "file_name": file_name,
            "kind": kind,
            "reason": reason,
            "file_modified_at": modified.isoformat(),
            "quarantined_at": dt.datetime.now(dt.UTC).isoformat(),
            "size_bytes": len(data or b""),
            "bytes_kept": keep_bytes,
        }
        if data is None:
            payload["note"] = "the file was not read"
        elif unknown_columns:
            payload["note"] = (
                "its columns are not the contract's and may hold personal data: its bytes stay "
                "in the drop"
            )
        elif not keep_bytes:
            payload["note"] = (
                "the file holds personal data, which never enters the lake in plain text; "
                "its bytes stay in the drop"
            )
        write_json(self.fs, reason_path, payload)

    def clear(self, kind: str, file_name: str) -> None:
        """Remove a file's quarantine entry once a newer version was read successfully."""
        for path in self._paths(kind, file_name):
            if self.fs.exists(path):
                self.fs.rm(path)
