"""Stampli CSV exports as numbered rows: RFC 4180 quoting, encoding and delimiter per layout."""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import chain
from operator import itemgetter, methodcaller
from typing import IO

from pipeline.stampli.layout import DELIMITERS, Layout
from pipeline.stampli.rows import FileUnreadable, Record, RowSource, line_of_offset

_UTF8_BOM = b"\xef\xbb\xbf"
_nfkc = partial(unicodedata.normalize, "NFKC")  # ASCII: returned as is, in C


class CsvRows(RowSource):
    """Rows of a CSV file; the header is read at once so that a file without one fails early.

    Values are stripped cells, "" when empty (cheaper than leaving them out; the parser gives
    marshmallow the absent-key view). `records` is native here, dict rows derive from it."""

    def __init__(self, stream: IO[bytes], layout: Layout, name: str = "") -> None:
        self.stream, self.layout, self.name = stream, layout, name
        self.encoding = self._encoding()
        self._refuse_binary()
        header = self._header()
        self.fields: list[str | None] = [layout.field_for(h) for h in header]
        self._check_header(header)
        self.columns = frozenset(f for f in self.fields if f)
        self._width = len(header)

    # -- whole-file checks ----------------------------------------------------------------------
    def _encoding(self) -> str:
        self.stream.seek(0)
        # A UTF-8 BOM is unambiguous: honour it even when the layout says cp1252.
        if self.stream.read(3) == _UTF8_BOM:
            return "utf-8-sig"
        return self.layout.encoding

    def _refuse_binary(self) -> None:
        """NUL never occurs in a utf-8/cp1252 text file: it is UTF-16, a spreadsheet, or broken.
        Checked on the bytes (fast), and Postgres could not store it anyway."""
        self.stream.seek(0)
        offset = 0
        while chunk := self.stream.read(1 << 20):
            at = chunk.find(b"\0")
            if at >= 0:
                line = line_of_offset(self.stream, offset + at)
                raise FileUnreadable(f"NUL byte at line {line}: not a {_shown(self.encoding)}"
                                     " text file (UTF-16 or a spreadsheet?)")
            offset += len(chunk)

    def _header(self) -> list[str]:
        with self._records() as records:
            for record in records.reader:
                if any(cell.strip() for cell in record):
                    self._header_line = records.reader.line_num
                    return record
        raise FileUnreadable("the file is empty: no header row")

    def _check_header(self, header: list[str]) -> None:
        if not any(self.fields):
            hint = self._delimiter_hint(header)
            raise FileUnreadable("no known column in the header row"
                                 + (hint or " (wrong delimiter or layout?)"))
        seen: dict[str, str] = {}
        for cell, f in zip(header, self.fields, strict=True):
            if f and f in seen:
                raise FileUnreadable(f"columns {seen[f]!r} and {cell.strip()!r} both map to {f}")
            if f:
                seen[f] = cell.strip()

    def _delimiter_hint(self, header: list[str]) -> str:
        line = self.layout.delimiter.join(header)
        for delim in (",", ";", "\t", "|"):
            if delim != self.layout.delimiter and any(
                    self.layout.field_for(cell) for cell in line.split(delim)):
                shown = next(k for k, v in DELIMITERS.items() if v == delim and len(k) > 1)
                return (f": the header looks {shown}-delimited but the layout says"
                        f" {self.layout.delimiter!r}")
        return ""

    # -- reading --------------------------------------------------------------------------------
    def _records(self) -> _Records:
        return _Records(self)

    def records(self, fields: Sequence[str]) -> Iterator[Record]:
        width, strip = self._width, str.strip
        index = {f: i for i, f in enumerate(self.fields) if f}
        # A field the header lacks reads the "" appended past the last column.
        absent = any(f not in index for f in fields)
        positions = [index.get(f, width) for f in fields]
        pick = itemgetter(*positions) if len(positions) > 1 else (
            lambda record: (record[positions[0]],))
        with self._records() as records:
            reader = records.reader
            line = self._skip_header(records)
            for record in reader:  # the hot loop: one turn per data row, kept lean
                start, line = line, reader.line_num + 1
                if line - start == 1 and len(record) == width:  # the common case
                    if absent:
                        record.append("")
                    # In C: our columns in the caller's order, stripped. "" means no value.
                    values = tuple(map(strip, pick(record)))
                    if any(values) or any(map(strip, record)):  # else: a blank line
                        yield start, values, None
                    continue
                if not record:
                    continue  # a blank line
                if line - start > 1:  # a quoted newline: values as XML would give them
                    record = [c.replace("\r\n", "\n") for c in record]
                error = None
                if len(record) != width:
                    if len(record) > width and any(map(strip, record[width:])):
                        error = (None, "more cells than header columns")
                    record = (record + [""] * width)[:width]  # short rows: missing cells empty
                if absent:
                    record.append("")
                values = tuple(map(strip, pick(record)))
                if error is None and not any(values) and not any(map(strip, record)):
                    continue  # only delimiters and spaces: a blank line
                yield start, values, error

    def count_keys(self, names: Sequence[str]) -> Counter[int]:
        index = {f: i for i, f in enumerate(self.fields) if f}
        wanted = [index.get(n) for n in names]
        if None in wanted or len(wanted) < 2:  # the general path covers the odd cases
            return super().count_keys(names)
        # The whole pass in C: pick the key cells, normalise them as records() + normalised_key
        # do (line ends of quoted newlines, strip, casefold), pair them again, hash, count.
        pick, width = itemgetter(*wanted), len(wanted)
        counts: Counter[int] = Counter()
        with self._records() as records:
            reader = records.reader
            self._skip_header(records)
            while True:
                cells = map(str.casefold, map(str.strip, map(_nfkc, map(
                    methodcaller("replace", "\r\n", "\n"),
                    chain.from_iterable(map(pick, reader))))))
                try:
                    counts.update(map(hash, zip(*[cells] * width, strict=False)))
                    return counts
                except IndexError:
                    continue  # a short row, without all of `names`: resume after it

    def _skip_header(self, records: _Records) -> int:
        reader = records.reader
        for _ in reader:
            if reader.line_num >= self._header_line:
                break
        return reader.line_num + 1


class _Records:
    """csv.reader over the decoded stream, as a context: decoding and syntax errors leave it as
    one-line `FileUnreadable` reasons with the line number; the caller's stream stays open."""

    def __init__(self, owner: CsvRows) -> None:
        self.owner = owner
        owner.stream.seek(0)
        self.text = io.TextIOWrapper(owner.stream, encoding=owner.encoding, newline="")
        self.reader = csv.reader(self.text, delimiter=owner.layout.delimiter, strict=True)

    def __enter__(self) -> _Records:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        self.text.detach()  # closing the wrapper would close the caller's stream
        if isinstance(exc, UnicodeDecodeError):
            raise FileUnreadable(self._decode_error()) from None
        if isinstance(exc, csv.Error):
            raise FileUnreadable(f"CSV syntax error at line {self.reader.line_num}: {exc}"
                                 " (unbalanced quotes?)") from None

    def _decode_error(self) -> str:
        """The exact line of the first undecodable byte (the wrapper decodes in chunks)."""
        stream, encoding = self.owner.stream, self.owner.encoding
        # utf-8-sig reports offsets past the BOM: skip the BOM ourselves and decode plain utf-8.
        stream.seek(0)
        offset = 3 if stream.read(3) == _UTF8_BOM else 0
        stream.seek(offset)
        shown = _shown(encoding)
        decoder = codecs.getincrementaldecoder(shown)()
        while True:
            chunk = stream.read(1 << 20)
            pending = len(decoder.getstate()[0])  # bytes of a split character, carried over
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = line_of_offset(stream, offset - pending + exc.start)
                return (f"not valid {shown} at line {line}: byte 0x{exc.object[exc.start]:02x}"
                        " (set the layout's encoding, e.g. cp1252?)")
            if not chunk:
                return f"not valid {shown}"
            offset += len(chunk)


def _shown(encoding: str) -> str:
    return "utf-8" if encoding == "utf-8-sig" else encoding
