"""Source files as Postgres large objects: streamed in and out in chunks, inside the caller's
transaction, so memory stays flat however large the export."""

from __future__ import annotations

import io
from typing import IO

from psycopg2.extensions import cursor as Cursor
from psycopg2.extensions import lobject

CHUNK = 256 * 1024


def store(cur: Cursor, source: IO[bytes]) -> int:
    """Copy source (from its current position) into a new large object; returns its oid."""
    blob = cur.connection.lobject(0, "wb")
    try:
        while chunk := source.read(CHUNK):
            blob.write(chunk)
        return blob.oid
    finally:
        blob.close()


def discard(cur: Cursor, oid: int) -> None:
    cur.connection.lobject(oid, "wb").unlink()


class _LargeObjectRaw(io.RawIOBase):
    def __init__(self, blob: lobject) -> None:
        self._blob = blob

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._blob.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._blob.seek(offset, whence)

    def tell(self) -> int:
        return self._blob.tell()

    def close(self) -> None:
        if not self.closed:
            self._blob.close()
        super().close()


def open_for_reading(cur: Cursor, oid: int) -> IO[bytes]:
    """A seekable binary stream over a large object (the parser reads files twice)."""
    return io.BufferedReader(_LargeObjectRaw(cur.connection.lobject(oid, "rb")),
                             buffer_size=CHUNK)
