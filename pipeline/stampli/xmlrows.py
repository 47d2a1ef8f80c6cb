"""Stampli XML exports as numbered rows, streamed through a hardened expat parser.

    <StampliExport type="invoices">
      <Invoice> header fields... <Lines><Line> line fields... </Line></Lines> </Invoice>
    </StampliExport>
    <StampliExport type="vendors"><Vendor> vendor fields... </Vendor></StampliExport>

Each `<Line>` becomes one row (its invoice's header fields plus its own), numbered with the source
line of the `<Line>` start tag, so XML and CSV rows go through the same grouping and checks.
Element names go through the layout like CSV headers do (aliases, case, `_`/`-`).

defusedxml's expat reader refuses any DTD, entity declaration or external reference: no XXE, no
billion laughs; such a file is refused as a whole. Expat events rather than ElementTree's
iterparse: during a start-tag callback the parser's position is that tag's line (iterparse
reports events after whole chunks), and memory holds one record at a time.

Size bounds (`Limits`): expat rescans a token it cannot finish (a tag with its attributes, a
comment, a processing instruction) from its start on every feed, so a 50 MB attribute took
51 s. Between feeds, the bytes expat holds unfinished (fed minus `CurrentByteIndex`, the start
of the pending token) are checked against the cell cap, as are attributes, comments and PIs that
fit in one chunk: past it the file is refused (no way to resume inside a token). Text is
reported as it comes: a field's text over the cap rejects its record only. A deadline is checked
per chunk, and nesting is bounded.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from time import monotonic
from typing import IO, Any
from xml.sax import SAXParseException
from xml.sax.handler import ContentHandler

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.expatreader import DefusedExpatParser, create_parser

from pipeline.stampli.layout import Layout
from pipeline.stampli.rows import (
    ROW_ERROR,
    FileUnreadable,
    NumberedRow,
    Row,
    RowSource,
    line_of_offset,
)

ROOT = "StampliExport"
RECORDS = {"Invoice": "invoices", "Vendor": "vendors"}
_CHUNK = 1 << 16
_MAX_DEPTH = 32  # the format nests 5 deep
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([^\"']*)", re.DOTALL)
_EXPAT_NATIVE = {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "iso8859-1", "ascii"}


class XmlRows(RowSource):
    def __init__(self, stream: IO[bytes], layout: Layout, name: str = "") -> None:
        self.stream, self.layout, self.name = stream, layout, name
        self.kind: str | None = None  # from <StampliExport type="...">
        self.expected: str | None = None

    def expect_kind(self, kind: str) -> None:
        self.expected = kind

    def __iter__(self) -> Iterator[NumberedRow]:
        reader: DefusedExpatParser = create_parser(forbid_dtd=True, forbid_entities=True,
                                                   forbid_external=True)
        reader.setContentHandler(ContentHandler())
        try:
            # The first feed makes the reader create its expat parser and install defusedxml's
            # guards (DTD, entity declarations, external references). Element and text events
            # then go straight to our handler: the SAX layer would add a Python call and an
            # attributes object per element.
            reader.feed(b"")
            expat = reader._parser
            handler = _Handler(self, expat)
            expat.StartElementHandler, expat.EndElementHandler = handler.start, handler.end
            expat.CharacterDataHandler = handler.text
            expat.CommentHandler = handler.comment
            expat.ProcessingInstructionHandler = handler.instruction
            expat.buffer_text = True  # one text event per run of text
            limits, fed = self.layout.limits, 0
            deadline = monotonic() + limits.parse_deadline
            for chunk in self._chunks():
                if monotonic() > deadline:
                    raise FileUnreadable(f"parsing took longer than the"
                                         f" {limits.parse_deadline:g} s deadline"
                                         f" (MLC_PARSE_DEADLINE), at line"
                                         f" {expat.CurrentLineNumber}")
                reader.feed(chunk)
                fed += len(chunk)
                if fed - expat.CurrentByteIndex > limits.max_field:
                    handler.too_long()
                yield from handler.take()
            reader.close()
        except DTDForbidden:
            raise FileUnreadable("XML with a DTD (<!DOCTYPE>) is refused: exports must not"
                                 " declare a DTD or entities") from None
        except EntitiesForbidden:
            raise FileUnreadable("XML declaring entities is refused") from None
        except DefusedXmlException as exc:
            raise FileUnreadable(f"XML refused: {type(exc).__name__}") from None
        except SAXParseException as exc:
            raise FileUnreadable(f"malformed XML at line {exc.getLineNumber()}, column"
                                 f" {exc.getColumnNumber()}: {exc.getMessage()}") from None
        except (LookupError, UnicodeError) as exc:  # an encoding expat asked Python for
            raise FileUnreadable(f"XML in an unreadable encoding: {exc}") from None
        yield from handler.take()
        if handler.root is None:
            raise FileUnreadable("malformed XML: no root element")

    def _chunks(self) -> Iterator[bytes]:
        """The document's bytes; one without an encoding declaration (so UTF-8 by XML's rules)
        is transcoded from the layout's encoding when that is not UTF-8 (a cp1252 customer)."""
        self.stream.seek(0)
        head = self.stream.read(_CHUNK)
        if not head.removeprefix(b"\xef\xbb\xbf").strip():
            raise FileUnreadable("the file is empty")
        declared = _DECLARED_ENCODING.match(head.removeprefix(b"\xef\xbb\xbf"))
        if declared:
            _check_declared_encoding(declared.group(1).decode("ascii", "replace"))
        transcode = (not head.startswith(b"\xef\xbb\xbf") and not declared
                     and not self.layout.encoding.startswith("utf-8"))
        if not transcode:
            chunk = head
            while chunk:
                yield chunk
                chunk = self.stream.read(_CHUNK)
            return
        decoder = codecs.getincrementaldecoder(self.layout.encoding)()
        chunk, offset = head, 0
        try:
            while chunk:
                yield decoder.decode(chunk).encode("utf-8")
                offset += len(chunk)
                chunk = self.stream.read(_CHUNK)
            yield decoder.decode(b"", final=True).encode("utf-8")
        except UnicodeDecodeError as exc:
            line = line_of_offset(self.stream, offset + exc.start)
            raise FileUnreadable(f"not valid {self.layout.encoding} at line {line}: byte"
                                 f" 0x{exc.object[exc.start]:02x}") from None


def _check_declared_encoding(name: str) -> None:
    """Expat reads UTF-8/16 and Latin-1 itself, and other single-byte encodings through
    Python's codecs; anything else would fail inside the parser with a less clear error."""
    try:
        canonical = codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        raise FileUnreadable(f"XML declares an unknown encoding {name!r}") from None
    if canonical in _EXPAT_NATIVE:
        return
    try:
        single_byte = len(bytes(range(256)).decode(canonical, errors="replace")) == 256
    except (UnicodeError, LookupError):
        single_byte = False
    if not single_byte:
        raise FileUnreadable(f"XML declares encoding {name!r}, which is not supported:"
                             " export as UTF-8 or cp1252")


class _Handler:
    """Collects one record (an Invoice with its Lines, or a Vendor) at a time."""

    def __init__(self, source: XmlRows, expat: Any) -> None:
        self.source, self.expat = source, expat
        self.field_for: dict[str, str | None] = {}  # element name -> our field (cached)
        self.root: str | None = None
        self.path: list[str] = []
        self.ready: list[NumberedRow] = []
        self.record: str | None = None  # "Invoice" / "Vendor" while inside one
        self.record_line = 0
        self.header: Row = {}
        self.lines: list[tuple[int, Row]] = []
        self.target: Row | None = None  # the current <Line>'s fields
        self.target_for_field: Row = {}  # the dict the current field element fills
        self.field: str | None = None
        self.field_depth = 0
        self.buffer: list[str] = []
        self.buffered = 0  # characters in buffer
        self.error: tuple[str | None, str] | None = None
        self.max_field = source.layout.limits.max_field
        self.max_lines = source.layout.limits.max_invoice_lines
        self.max_field_kb = source.layout.limits.max_field_kb

    def too_long(self) -> None:
        raise FileUnreadable(f"an XML tag, attribute, comment or processing instruction longer"
                             f" than {self.max_field_kb} KB (MLC_MAX_FIELD_KB) at line"
                             f" {self._line()}")

    def comment(self, text: str) -> None:
        if len(text) > self.max_field:
            self.too_long()

    def instruction(self, target: str, data: str) -> None:
        if len(data) > self.max_field:
            self.too_long()

    def take(self) -> list[NumberedRow]:
        rows, self.ready = self.ready, []
        return rows

    def _line(self) -> int:
        return self.expat.CurrentLineNumber  # during a start event: that tag's line

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.path.append(name)
        depth = len(self.path)
        if attrs and max(map(len, attrs.values())) > self.max_field:
            self.too_long()
        if depth > _MAX_DEPTH:
            raise FileUnreadable(f"XML elements nested deeper than {_MAX_DEPTH} at line"
                                 f" {self._line()}")
        if self.field is not None:  # markup inside a field's value
            if self.error is None:
                self.error = (self.field, f"<{self.path[-2]}> at line {self._line()} holds"
                                          f" element <{name}>, expected text")
        elif depth == 5 and self.target is not None:
            self._start_field(name, self.target)
        elif depth == 3 and self.record is not None:
            if self.record == "Invoice" and name == "Lines":
                return
            self._start_field(name, self.header)
        elif depth == 4 and self.record == "Invoice" and self.path[2] == "Lines":
            if name != "Line":
                raise FileUnreadable(f"unexpected <{name}> in <Lines> at line {self._line()}")
            self.target = {}
            if len(self.lines) < self.max_lines:
                self.lines.append((self._line(), self.target))
            elif self.error is None:  # the rest are read and dropped: the invoice is refused
                self.error = (None, f"more than {self.max_lines} lines, the limit"
                                    " (MLC_MAX_INVOICE_LINES)")
        elif depth == 2:
            self._start_record(name)
        elif depth == 1:
            self._root(name, attrs)

    def _root(self, name: str, attrs: dict[str, str]) -> None:
        if name != ROOT:
            raise FileUnreadable(f"XML root element is <{name}>, expected <{ROOT}>")
        self.root = name
        kind = attrs.get("type")
        if kind is not None and kind not in RECORDS.values():
            raise FileUnreadable(f"unknown export type {kind!r} (expected invoices or vendors)")
        self.source.kind = kind
        self._check_kind(kind)

    def _check_kind(self, kind: str | None) -> None:
        expected = self.source.expected
        if kind and expected and kind != expected:
            raise FileUnreadable(f"this is a {kind} export, expected {expected}")

    def _start_record(self, name: str) -> None:
        if name not in RECORDS:
            raise FileUnreadable(f"unexpected <{name}> at line {self._line()}: expected"
                                 f" {' or '.join(f'<{r}>' for r in RECORDS)}")
        self._check_kind(RECORDS[name])
        if self.source.kind and RECORDS[name] != self.source.kind:
            raise FileUnreadable(f"<{name}> at line {self._line()} in a {self.source.kind}"
                                 " export")
        self.record, self.record_line = name, self._line()
        self.header, self.lines, self.error = {}, [], None

    def _start_field(self, name: str, target: Row) -> None:
        try:
            ours = self.field_for[name]
        except KeyError:
            ours = self.field_for[name] = self.source.layout.field_for(name)
        if ours is None:
            return  # an element we do not use, like an unknown CSV column
        if ours in target and self.error is None:
            self.error = (ours, f"<{name}> given twice (line {self._line()})")
        self.target_for_field = target
        self.field, self.field_depth, self.buffer, self.buffered = ours, len(self.path), [], 0

    def text(self, content: str) -> None:
        if self.field is not None:
            self.buffered += len(content)
            if self.buffered <= self.max_field:
                self.buffer.append(content)
            else:  # over the cap: the record is rejected, the text dropped
                self.buffer = []
                if self.error is None:
                    self.error = (self.field, f"text longer than {self.max_field_kb} KB"
                                              " (MLC_MAX_FIELD_KB)")

    def end(self, name: str) -> None:
        depth = len(self.path)
        self.path.pop()
        if self.field is not None:
            if depth == self.field_depth:
                value = "".join(self.buffer).strip()
                if value:
                    self.target_for_field[self.field] = value
                self.field = None
        elif depth == 4 and self.record == "Invoice" and name == "Line":
            self.target = None
        elif depth == 2 and self.record is not None:
            self._end_record()

    def _end_record(self) -> None:
        header: dict[str, Any] = self.header
        if self.error:
            header[ROW_ERROR] = self.error
        if self.record == "Vendor":
            self.ready.append((self.record_line, header))
        elif not self.lines:
            self.ready.append((self.record_line, {
                **header, ROW_ERROR: self.error or ("line_number", "the invoice has no <Line>")}))
        else:
            self.ready.extend((line, {**header, **fields}) for line, fields in self.lines)
        self.record = None
