"""Where the input files are: ``input.path`` resolved to a list of :class:`SourceFile`, local or remote.

A local path, glob or folder is listed on this machine; ``s3://`` through Arrow's own S3
client (:mod:`object_store`), ``https://`` through httpx (:mod:`https_files`), ``sftp://``
through paramiko (:mod:`sftp_files`). Every location gives the readers the same three ways in:
:meth:`SourceFile.open` (a Python binary stream, for the encoding check, the CSV header and
JSON lines), :meth:`SourceFile.arrow` (Arrow's CSV reader) and :meth:`SourceFile.random`
(Parquet, read by ranged requests: the footer, then each row group's column chunks). A local
file is handed to Arrow by its path, as before (:mod:`source_file`).

Files are listed in name order. What cannot be reached is an :class:`~connector.errors.InputError`
naming the location and the fix (bucket or object missing, access denied, authentication
failed, host unreachable), never a credential: the readers' messages pass through the run's
redactor like every output.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.source_file import EXTENSIONS, SourceFile, has_pattern


def resolve(config: InputConfig) -> list[SourceFile]:
    """The files ``input.path`` names, in name order; InputError when there are none or they cannot be reached."""
    assert config.path is not None
    scheme = config.scheme
    if scheme in ("s3", "gs", "az", "abfs", "abfss"):
        from connector.rows.object_store import object_files

        return object_files(config)
    if scheme in ("https", "http"):
        from connector.rows.https_files import https_files

        return https_files(config.path, config.https, config.tls)
    if scheme == "sftp":
        from connector.rows.sftp_files import sftp_files

        return sftp_files(config.path, config.sftp)
    return [SourceFile(name) for name in _local_files(config.path)]


def _local_files(path: str) -> list[str]:
    expanded = os.path.expanduser(path)
    if has_pattern(expanded):
        matches = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"input.path: no file matches '{path}'; check the pattern and folder")
        return matches
    p = Path(expanded)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not found:
            raise InputError(f"input.path: folder '{path}' holds no .csv, .jsonl or .parquet file")
        return found
    if not p.exists():
        raise InputError(f"input.path: file '{path}' does not exist (relative paths start at {os.getcwd()})")
    if not os.access(p, os.R_OK):
        raise InputError(f"input.path: file '{path}' is not readable (permissions)")
    return [str(p)]
