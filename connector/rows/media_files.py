"""Media cells that name an object in a store (``s3://``, ``gs://``, ``az://``, ``abfs://``), read through the
same Arrow clients and credentials as a remote input (:mod:`object_store`: ``input.s3``, ``input.gcs``,
``input.azure``, else the ambient credentials), whether or not the input itself lives there.

:class:`StoreMedia` is what :func:`connector.requests.media.load` calls for such a cell: :meth:`StoreMedia.size`
asks the store for the object's size first (a missing object, bucket or refused credential is an
:class:`~connector.errors.InputError` naming the column and the object, never a credential), and
:meth:`StoreMedia.read` reads it in 8 MB pieces, stopping once it holds more than the limit: an object
over the API shape's limit is never downloaded whole.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pyarrow.fs as pafs

from connector.config.input import InputConfig
from connector.errors import InputError
from connector.rows.object_store import _Bucket, bucket_of

STORE_SCHEMES = frozenset({"s3", "gs", "az", "abfs", "abfss"})
_PIECE = 8 << 20  # one GET per read of an S3 stream: few, large pieces


class StoreMedia:
    """Reads media objects with the input's store settings; one client per store, made on first use."""

    schemes = STORE_SCHEMES

    def __init__(self, config: InputConfig) -> None:
        self._config = config
        self._clients: dict[tuple[str, str], pafs.FileSystem] = {}

    def _store(self, url: str, column: str) -> tuple[_Bucket, str]:
        """The bucket of ``url`` (one client per store, kept for its next cell) and the object's path in it."""
        parts = urlsplit(url)
        where = (parts.scheme, parts.netloc)
        store = bucket_of(url, self._config, f"column {column!r}", self._clients.get(where))
        self._clients[where] = store.fs
        return store, f"{store.bucket}/{store.key}"

    def size(self, url: str, column: str) -> int | None:
        """The object's size in bytes (None when the store does not say); InputError when it cannot be read."""
        store, path = self._store(url, column)
        try:
            info = store.fs.get_file_info(path)
        except OSError as exc:
            if "ACCESS_DENIED" in str(exc):
                store.probe_parent()  # a HEAD's 403 has no body: a listing says what is refused
            raise store.error(exc) from None
        if info.type == pafs.FileType.NotFound:
            raise store.explain_missing()
        if info.type != pafs.FileType.File:
            raise InputError(f"column {column!r}: '{url}' is not an object (a folder?); name one image or document")
        size = info.size
        return int(size) if size is not None else None

    def read(self, url: str, column: str, limit: int) -> bytes:
        """The object's bytes, or its first ``limit + 1`` when it is larger (the rest is not downloaded)."""
        store, path = self._store(url, column)
        pieces: list[bytes] = []
        held = 0
        try:
            with store.fs.open_input_stream(path) as stream:
                while held <= limit:
                    piece = stream.read(min(_PIECE, limit + 1 - held))
                    if not piece:
                        break
                    pieces.append(piece)
                    held += len(piece)
        except OSError as exc:
            raise store.error(exc) from None
        return b"".join(pieces)
