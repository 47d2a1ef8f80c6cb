"""The bounded reader behind CsvRows for files with a long line or a quoted newline: csv.reader
never holds more than the row cap, and a refused row keeps the line numbers of the rows after it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.stampli.csvrows import CsvRows


def line_ends(text: str, start: int, end: int) -> int:
    """Line ends (\\n, \\r\\n or \\r, as csv reads them) in text[start:end]."""
    return (text.count("\n", start, end) + text.count("\r", start, end)
            - text.count("\r\n", start, end))



class LineGuard:
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
                    self.line += line_ends(text, at, len(text) - len(keep))
                    more = read(1 << 16)
                    if not more:
                        break
                    text, at = keep + more, 0
                    continue
                self.line += line_ends(text, at, q)
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
