"""Stampli CSV exports as numbered rows: RFC 4180 quoting, encoding and delimiter per layout.

Size bounds (`Limits`): a pre-scan of the bytes (the pass that already looks for NUL) finds, in
C, whether any physical line is longer than the row or cell cap, or holds an odd number of
quotes (a quoted newline: a row spanning lines). Most files have neither: csv.reader then reads
the file directly, and each row is one line within both caps. Otherwise the file is read through
`_Guard`, which hands csv.reader one bounded line at a time, follows the quoting across lines, and
replaces the lines of a row over the cap so that csv.reader never holds it: that row is refused
with its line and the limit, and the rows after it go on. csv.field_size_limit holds cells to the
cell cap; a cell over it is refused the same way.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import chain
from operator import attrgetter, itemgetter, methodcaller
from time import monotonic
from typing import IO

from pipeline.stampli.layout import DELIMITERS, Layout
from pipeline.stampli.rows import FileUnreadable, Record, RowError, RowSource, line_of_offset

_UTF8_BOM = b"\xef\xbb\xbf"
_FIELD_LIMIT = "field larger than field limit"
_odd = (1).__and__
_NOT_QUOTE_OR_NL = bytes(b for b in range(256) if b not in b'"\n')
_nfkc = partial(unicodedata.normalize, "NFKC")  # ASCII: returned as is, in C
_same = str  # str(a str) is that str: the identity, in C


class CsvRows(RowSource):
    """Rows of a CSV file; the header is read at once so that a file without one fails early.

    Values are stripped cells, "" when empty (cheaper than leaving them out; the parser gives
    marshmallow the absent-key view). `records` is native here, dict rows derive from it."""

    def __init__(self, stream: IO[bytes], layout: Layout, name: str = "") -> None:
        self.stream, self.layout, self.name = stream, layout, name
        self.limits = layout.limits
        self.deadline = monotonic() + self.limits.parse_deadline
        self.encoding = self._encoding()
        self._guarded = self._scan()
        self._guard: _Guard | None = None
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

    def _scan(self) -> bool:
        """NUL never occurs in a utf-8/cp1252 text file: it is UTF-16, a spreadsheet, or broken
        (and Postgres could not store it). Checked on the bytes, with the cheap test of whether
        the file needs `_Guard`: a line over the row or cell cap, or a line with an odd number
        of quotes (a row spanning lines). Returns that. All in C, a few calls per MB."""
        cap = min(self.limits.max_line, self.limits.max_field)
        self.stream.seek(0)
        offset, carried, quotes, guarded = 0, 0, 0, False
        self.ascii = True  # then keys need no NFKC
        while chunk := self.stream.read(1 << 20):
            self.ascii = self.ascii and chunk.isascii()
            at = chunk.find(b"\0")
            if at >= 0:
                line = line_of_offset(self.stream, offset + at)
                raise FileUnreadable(f"NUL byte at line {line}: not a {_shown(self.encoding)}"
                                     " text file (UTF-16 or a spreadsheet?)")
            offset += len(chunk)
            if guarded:
                continue
            first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
            if first < 0:
                carried += len(chunk)
                quotes += chunk.count(b'"')
                guarded = carried > cap
                continue
            guarded = carried + first > cap or _long_line_in(chunk, first, last, cap)
            carried = len(chunk) - last - 1
            if b'"' in chunk:
                # Quotes and line ends only: the complete lines are those between the first
                # and last line end; without their `""` pairs, a quote left is an odd line.
                marks = chunk.translate(None, _NOT_QUOTE_OR_NL)
                head, tail = marks.find(b"\n"), marks.rfind(b"\n")
                guarded = guarded or _odd(quotes + head) or b'"' in marks[head:tail].replace(
                    b'""', b"")
                quotes = len(marks) - tail - 1
            else:
                quotes = 0
        return guarded or _odd(quotes) or carried > cap

    def _header(self) -> list[str]:
        with self._records() as records:
            for record in records.reader:
                refused = records.guard and records.guard.marks.get(records.guard.record_start)
                if refused:
                    raise FileUnreadable(f"the header row (line {records.guard.record_start}):"
                                         f" {refused}")
                if any(cell.strip() for cell in record):
                    self._header_line = records.reader.line_num
                    if len(record) > self.limits.max_columns:
                        raise FileUnreadable(f"the header has {len(record)} columns, more than"
                                             f" the {self.limits.max_columns} allowed"
                                             " (MLC_MAX_COLUMNS)")
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

    def _check_deadline(self, line: int) -> None:
        if monotonic() > self.deadline:
            raise FileUnreadable(f"parsing took longer than the {self.limits.parse_deadline:g} s"
                                 f" deadline (MLC_PARSE_DEADLINE), at line {line}")

    def records(self, fields: Sequence[str]) -> Iterator[Record]:
        self._check_deadline(0)
        if self._guarded:
            yield from self._guarded_records(fields)
            return
        width, strip, deadline = self._width, str.strip, self._check_deadline
        # Record(start, values, None) without NamedTuple's Python-level __new__ (per row)
        new, record_type = tuple.__new__, Record
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
                if not line & 4095:
                    deadline(line)
                if line - start == 1 and len(record) == width:  # the common case
                    if absent:
                        record.append("")
                    # In C: our columns in the caller's order, stripped. "" means no value.
                    values = tuple(map(strip, pick(record)))
                    if any(values) or any(map(strip, record)):  # else: a blank line
                        yield new(record_type, (start, values, None))
                    continue
                if not record:
                    continue  # a blank line
                if line - start > 1:  # a quoted newline: values as XML would give them
                    record = [c.replace("\r\n", "\n") for c in record]
                error = self._width_error(record)
                record = (record + [""] * width)[:width]  # short rows: missing cells empty
                if absent:
                    record.append("")
                values = tuple(map(strip, pick(record)))
                if error is None and not any(values) and not any(map(strip, record)):
                    continue  # only delimiters and spaces: a blank line
                yield Record(start, values, error)

    def _width_error(self, record: list[str]) -> RowError | None:
        width, cells = self._width, len(record)
        if cells > self.limits.max_columns:
            return None, (f"{cells} cells, more than the {self.limits.max_columns} columns"
                          " allowed (MLC_MAX_COLUMNS)")
        if cells > width and any(map(str.strip, record[width:])):
            return None, "more cells than header columns"
        return None

    def _guarded_records(self, fields: Sequence[str]) -> Iterator[Record]:
        """`records` through `_Guard`: every row takes the general path, and rows the guard
        refused (or csv.reader found a cell over the cap in) come out as errors with whatever
        key cells could be read."""
        width, strip = self._width, str.strip
        index = {f: i for i, f in enumerate(self.fields) if f}
        positions = [index.get(f, width) for f in fields]  # width: the "" appended below
        getter = itemgetter(*positions) if len(positions) > 1 else (
            lambda record: (record[positions[0]],))
        pad = [""] * width

        def pick(record: list[str]) -> tuple[str, ...]:
            if len(record) != width:
                record = (record + pad)[:width]
            record.append("")
            return tuple(map(strip, getter(record)))

        with self._records() as records:
            reader, guard = records.reader, records.guard
            assert guard is not None
            self._skip_header(records)
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    if _FIELD_LIMIT not in str(exc):
                        raise
                    # csv.reader dropped the row and starts afresh at the next line: the
                    # guard drops what is left of the row, the row is refused from its head.
                    start = guard.record_start
                    guard.refuse(f"a cell longer than {self.limits.max_field_kb} KB"
                                 " (MLC_MAX_FIELD_KB)")
                    guard.marks.pop(start)
                    yield Record(start, pick(guard.head_cells(start, self.layout.delimiter)), (
                        None, f"a cell longer than {self.limits.max_field_kb} KB"
                              " (MLC_MAX_FIELD_KB)"))
                    continue
                start = guard.record_start
                refused = guard.marks.pop(start, None)
                if refused is not None:
                    cells = record or guard.head_cells(start, self.layout.delimiter)
                    yield Record(start, pick(cells), (None, refused))
                    continue
                if not record:
                    continue  # a blank line (or a line of a refused row)
                if guard.line > start:
                    record = [c.replace("\r\n", "\n") for c in record]
                error = self._width_error(record)
                values = pick(record)
                if error is None and not any(values) and not any(map(strip, record)):
                    continue
                yield Record(start, values, error)

    def count_keys(self, names: Sequence[str]) -> Counter[int]:
        index = {f: i for i, f in enumerate(self.fields) if f}
        wanted = [index.get(n) for n in names]
        if self._guarded:  # rows as `records` gives them (refused ones too), keyed alike
            nfkc = _same if self.ascii else _nfkc

            def key(values: tuple[str, ...]) -> tuple[str, ...]:  # = normalised_key
                return tuple(map(str.casefold, map(str.strip, map(nfkc, values))))
            return Counter(map(hash, map(key, map(attrgetter("values"), self.records(names)))))
        if None in wanted or len(wanted) < 2:  # the general path covers the odd cases
            return super().count_keys(names)
        # The whole pass in C: pick the key cells, normalise them as records() + normalised_key
        # do (line ends of quoted newlines, strip, casefold), pair them again, hash, count.
        pick, width = itemgetter(*wanted), len(wanted)
        counts: Counter[int] = Counter()
        with self._records() as records:
            reader = records.reader
            self._skip_header(records)
            nfkc = _same if self.ascii else _nfkc
            while True:
                cells = map(str.casefold, map(str.strip, map(nfkc, map(
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


def _long_line_in(chunk: bytes, first: int, last: int, cap: int) -> bool:
    """Whether a line wholly inside chunk[first:last] is longer than `cap` bytes. Any such line
    covers an aligned window of cap/2 bytes without a line end: one memchr per window finds the
    candidates, and only then are the lines measured."""
    window = max(cap // 2, 1)
    find = chunk.find
    for start in range(first, last - window + 1, window):
        if find(b"\n", start, start + window) < 0:
            return max(map(len, chunk[first:last].split(b"\n"))) > cap
    return False


def _line_ends(text: str, start: int, end: int) -> int:
    """Line ends (\\n, \\r\\n or \\r, as csv reads them) in text[start:end]."""
    return (text.count("\n", start, end) + text.count("\r", start, end)
            - text.count("\r\n", start, end))


class _Records:
    """csv.reader over the decoded stream, as a context: decoding and syntax errors leave it as
    one-line `FileUnreadable` reasons with the line number; the caller's stream stays open."""

    def __init__(self, owner: CsvRows) -> None:
        self.owner = owner
        owner.stream.seek(0)
        self.text = io.TextIOWrapper(owner.stream, encoding=owner.encoding, newline="")
        self.guard = _Guard(self.text, owner) if owner._guarded else None
        lines = self.guard.lines() if self.guard else self.text
        # Process-wide in the csv module: set for this reading, restored after it.
        self.field_limit = csv.field_size_limit(owner.limits.max_field)
        self.reader = csv.reader(lines, delimiter=owner.layout.delimiter, strict=True)

    def __enter__(self) -> _Records:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        csv.field_size_limit(self.field_limit)
        self.text.detach()  # closing the wrapper would close the caller's stream
        if isinstance(exc, UnicodeDecodeError):
            raise FileUnreadable(self._decode_error()) from None
        if isinstance(exc, csv.Error) and _FIELD_LIMIT in str(exc):
            raise FileUnreadable(f"a cell longer than {self.owner.limits.max_field_kb} KB"
                                 f" (MLC_MAX_FIELD_KB) at line {self.reader.line_num}") from None
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


class _Guard:
    """Physical lines for csv.reader, each read with a bounded readline, for files the pre-scan
    found a long line or a quoted newline in. Follows the quoting (the parity of `"` per line)
    to know where each row starts (`record_start`, `line`: line numbers come from here, not from
    csv.reader); a row that grows past the row cap is refused: its start line is marked,
    csv.reader gets one stand-in line (`"` ending the quoted cell it is in, or a blank line) and
    the rest of the row is read and dropped here. The first line of the current row is kept
    (bounded) so that its key cells can name the refused row."""

    def __init__(self, text: io.TextIOWrapper, owner: CsvRows) -> None:
        self.text, self.owner = text, owner
        self.cap = owner.limits.max_line
        self.marks: dict[int, str] = {}  # first line of a refused row -> reason
        self.heads: dict[int, str] = {}  # its first line, cut to the cap
        self.line = 0  # physical lines handed out
        self.in_quote = False  # at the end of the last line handed out
        self.record_start, self.record_head = 1, ""
        self.dropping = False  # the rest of a refused row
        self.pending = ""  # text read past a dropped row's end, read before the stream

    def refuse(self, reason: str) -> None:
        self.marks[self.record_start] = reason
        self.heads[self.record_start] = self.record_head
        self.dropping = self.in_quote  # more lines of the row to come

    def head_cells(self, start: int, delimiter: str) -> list[str]:
        """The complete cells of a refused row's first line (the last may be cut)."""
        head = self.heads.pop(start, "")
        text = head.rstrip("\r\n")[:self.owner.limits.max_field]  # within csv's cell limit
        cut = len(head) >= self.cap or not head.endswith(("\n", "\r")) or len(text) < len(
            head.rstrip("\r\n"))
        for attempt in (text, text + '"'):  # cut inside a quoted cell: close it
            try:
                cells = next(csv.reader([attempt], delimiter=delimiter, strict=True), [])
                break
            except csv.Error:
                cells = []
        return cells[:-1] if cut else cells

    def _readline(self, limit: int) -> str:
        if not self.pending:
            return self.text.readline(limit)
        text = self.pending
        ends = [i for i in (text.find("\n", 0, limit), text.find("\r", 0, limit)) if i >= 0]
        if ends:
            end = min(ends) + 1
            if text[end - 1] == "\r" and text[end:end + 1] == "\n":
                end += 1
            end = min(end, limit)
        elif len(text) >= limit:
            end = limit
        else:
            self.pending = ""
            return text + self.text.readline(limit - len(text))
        self.pending = text[end:]
        return text[:end]

    def _drop_row(self) -> None:
        """Read past the rest of a refused row, which is inside a quoted cell now: in chunks,
        with str.find (a 50 MB cell of short lines is not 26 million readline calls)."""
        read, text, at, quoted = self.text.read, self.pending or self.text.read(1 << 16), 0, True
        self.pending = ""
        while text:
            self.owner._check_deadline(self.line)
            if quoted:
                q = text.find('"', at)
                if q < 0 or q + 1 == len(text):  # no quote, or one whose next char is unread
                    keep = text[q:] if q >= 0 else ""
                    self.line += _line_ends(text, at, len(text) - len(keep))
                    more = read(1 << 16)
                    if not more:
                        break
                    text, at = keep + more, 0
                    continue
                self.line += _line_ends(text, at, q)
                if text[q + 1] == '"':  # an escaped quote: still inside
                    at = q + 2
                else:
                    at, quoted = q + 1, False
                continue
            ends = [i for i in (text.find("\n", at), text.find("\r", at)) if i >= 0]
            q = text.find('"', at)
            if ends and (q < 0 or min(ends) < q):  # the row ends at this line end
                end = min(ends) + 1
                if text[end - 1] == "\r" and text[end:end + 1] == "\n":
                    end += 1
                self.line += 1  # the row's last line
                self.pending = text[end:]
                break
            if q >= 0:
                at, quoted = q + 1, True
                continue
            text, at = read(1 << 16), 0
        self.in_quote = self.dropping = False

    def lines(self) -> Iterator[str]:
        # Per line: state in locals, written back to the guard before each yield (the reader
        # of rows, and `refuse`, read it between lines).
        cap, text_readline = self.cap, self.text.readline
        too_long = f"row longer than {self.owner.limits.max_line_kb} KB (MLC_MAX_LINE_KB)"
        line, in_quote, record_len = self.line, self.in_quote, 0
        while True:
            if self.dropping:
                self._drop_row()
                line, in_quote = self.line, False
            piece = self._readline(cap + 1) if self.pending else text_readline(cap + 1)
            if not piece:
                return
            line += 1
            if not line & 1023:
                self.owner._check_deadline(line)
            quotes, length = piece.count('"'), len(piece)
            if length > cap and piece[-1] not in "\r\n":  # over the cap: read the rest, bounded
                while more := self._readline(1 << 16):
                    quotes, length = quotes + more.count('"'), length + len(more)
                    if more[-1] in "\r\n":
                        break
                    self.owner._check_deadline(line)
            was_quoted = in_quote
            if not was_quoted:  # a row starts on this line
                self.record_start, self.record_head, record_len = line, piece, 0
            record_len += length - (piece[-1] == "\n")
            if quotes & 1:
                in_quote = not in_quote
            self.line, self.in_quote = line, in_quote
            if record_len > cap:
                self.refuse(too_long)
                # Inside a quoted cell of a row csv.reader began: close it, ending the row.
                yield '"\n' if was_quoted else "\n"
            else:
                yield piece


def _shown(encoding: str) -> str:
    return "utf-8" if encoding == "utf-8-sig" else encoding
