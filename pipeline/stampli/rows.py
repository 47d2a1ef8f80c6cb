"""What every reader (CSV, XML) hands the parser: numbered rows of our field names.

A row is `(source line, {field: value})`: values are stripped, non-empty strings; a problem the
reader found in that row (extra cells, an element given twice) travels in the row under
`ROW_ERROR` so that it rejects the row's invoice, not the file. A problem with the whole file
raises `FileUnreadable`.

Sources are re-iterable (each iteration reads the stream again from the start): the invoice
parser makes a cheap counting pass, then a streaming pass, so memory stays flat however large
the file is.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, NamedTuple
from unicodedata import normalize

ROW_ERROR = "__error__"  # value: (field or None, reason)
Row = dict[str, Any]
NumberedRow = tuple[int, Row]
RowError = tuple[str | None, str]


class Record(NamedTuple):
    """One data row as `RowSource.records(fields)` hands it to the parser.

    The second row of samples/invoices_20261103101500.csv, asked for parse's invoice fields::

        Record(line=2,
               values=("ST-50001", "INV-88121", "V-1001", "Acme Industrial Supply", "",
                       "2026-11-01", "2026-12-01", "", "USD", "1,260.50", "60.50", "PO-4410",
                       "Approved", "2026-11-02", "j.doe",             # the header fields, then
                       "1", "Hydraulic hose assemblies", "10", "800.00", "6100", "CC-PLANT1",
                       ""),                                           # the line fields
               error=None)

    `values` follow the order of `fields`: text as the file has it (amounts and dates are not
    converted yet), stripped, "" for a value the row lacks. `error` is a problem the reader
    found in this row, `(field or None, reason)`: it rejects the row's invoice, not the file.
    """

    line: int  # the source line the row starts on (a quoted cell may span several)
    values: tuple[str, ...]
    error: RowError | None

_SPOOL_BYTES = 8 << 20  # a non-seekable input is spooled: in memory up to this, then on disk


class FileUnreadable(Exception):
    """The file as a whole cannot be parsed (encoding, no header, missing columns, bad XML)."""


class RowSource:
    """Base of the readers: each implements `__iter__` (dict rows) or `records` (tuples in a
    field order the parser chooses: cheaper, no dict per row), and gets the other from here."""

    name: str = ""
    columns: frozenset[str] | None = None  # fields present for every row (CSV header), if known

    def __iter__(self) -> Iterator[NumberedRow]:
        fields = sorted(self.columns or ())
        for line, values, error in self.records(fields):
            row: Row = dict(zip(fields, values, strict=True))
            if error is not None:
                row[ROW_ERROR] = error
            yield line, row

    def records(self, fields: Sequence[str]) -> Iterator[Record]:
        for line, row in self:
            values = tuple([(row.get(f) or "").strip() for f in fields])
            yield Record(line, values, row.get(ROW_ERROR))

    def expect_kind(self, kind: str) -> None:
        """The caller parses this file as `kind` ("invoices"/"vendors"); formats that declare
        their kind (XML) refuse a mismatch as a whole-file problem."""

    def count_keys(self, names: Sequence[str]) -> Counter[int]:
        """Rows per key: the hash of `normalised_key` of the values of `names`, as `records`
        gives them. The parser's first pass: one small int per distinct key, whatever the size
        of the file (two keys sharing a hash only cost memory later, never correctness)."""
        return Counter(hash(normalised_key(values)) for _, values, _ in self.records(names))


def normalised_key(values: Iterable[str]) -> tuple[str, ...]:
    """How invoice keys compare (the ledger's dedup key): NFKC, stripped, case-folded."""
    return tuple(normalize("NFKC", v).strip().casefold() for v in values)


class ListRows(RowSource):
    """Rows already in memory (tests, small inputs): iterable any number of times."""

    def __init__(self, rows: Iterable[NumberedRow]) -> None:
        self.rows = list(rows)

    def __iter__(self) -> Iterator[NumberedRow]:
        return iter(self.rows)


def seekable(stream: IO[bytes]) -> IO[bytes]:
    """Two passes need a seekable stream; spool anything else (a socket, a pipe)."""
    try:
        if stream.seekable():
            return stream
    except (AttributeError, ValueError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - returned
    while chunk := stream.read(1 << 20):
        spool.write(chunk)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def sniff_format(filename: str, stream: IO[bytes]) -> str:
    """"xml" or "csv": by extension first, then by the first significant byte."""
    lowered = filename.lower()
    if lowered.endswith(".xml"):
        return "xml"
    stream.seek(0)
    head = stream.read(512)
    stream.seek(0)
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return "xml" if head.startswith(b"<") else "csv"


def line_of_offset(stream: IO[bytes], offset: int) -> int:
    """1-based line holding byte `offset` (for error messages only)."""
    stream.seek(0)
    line, done = 1, 0
    while done < offset:
        chunk = stream.read(min(1 << 20, offset - done))
        if not chunk:
            break
        line += chunk.count(b"\n")
        done += len(chunk)
    return line
