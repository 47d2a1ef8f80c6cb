"""Edge-case and malformed export files (tests/unit/corpus/), one test per file, each with its
exact expected outcome in corpus/expected.json: the invoices accepted (vendor, number, total,
document type, source lines), the ones rejected (field, reason, line numbers), or the reason the
whole file is refused."""

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.stampli import parse
from pipeline.stampli.layout import Layout

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, Any] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
FILES = sorted(p.name for p in CORPUS.iterdir()
               if p.name != "expected.json" and ".layout." not in p.name)


def layout_for(name: str) -> Layout:
    stem = name.rsplit(".", 1)[0]
    for suffix in (".layout.json", ".layout.yaml"):
        if (CORPUS / (stem + suffix)).exists():
            return Layout.from_file(CORPUS / (stem + suffix))
    return Layout()


def outcome(name: str, kind: str = "invoices") -> tuple[list[Any], list[parse.Rejection], int]:
    layout = layout_for(name)
    with open(CORPUS / name, "rb") as fh:
        rows = parse.read_rows(name, fh, layout)
        stream = (parse.parse_vendors(rows, layout) if kind == "vendors"
                  else parse.parse_invoices(rows, layout))
        items = list(stream)
    accepted = [i for i in items if not isinstance(i, parse.Rejection)]
    rejected = [i for i in items if isinstance(i, parse.Rejection)]
    return accepted, rejected, stream.rows


def test_every_corpus_file_has_an_expectation():
    assert sorted(k for k in EXPECTED if not k.startswith("_")) == FILES
    assert len(FILES) >= 30


@pytest.mark.parametrize("name", FILES)
def test_corpus_file(name: str):
    want = EXPECTED[name]
    kind = want.get("kind", "invoices")
    if "unreadable" in want:
        with pytest.raises(parse.FileUnreadable) as refused:
            outcome(name, kind)
        assert want["unreadable"] in str(refused.value)
        assert "\n" not in str(refused.value)  # one line: it goes to a status column
        return
    accepted, rejected, rows = outcome(name, kind)
    assert rows == want["rows"]
    if kind == "vendors":
        assert [(v["vendor_id"], [v["line"]]) for v in accepted] == \
            [(a["vendor"], a["lines"]) for a in want["accepted"]]
        for got, expected in zip(accepted, want["accepted"], strict=True):
            assert {k: got[k] for k in expected.get("header", {})} == expected.get("header", {})
    else:
        assert [_summary(i) for i in accepted] == [
            (a["vendor"], a["number"], a["total"], a["type"], a["lines"])
            for a in want["accepted"]]
        for got, expected in zip(accepted, want["accepted"], strict=True):
            payload = got.payload()
            header = expected.get("header", {})
            assert {k: payload[k] for k in header} == header
            for line, partial in zip(payload["lines"], expected.get("line_values", []),
                                     strict=False):
                assert {k: line[k] for k in partial} == partial
    assert [(r.vendor_id, r.invoice_number, r.field, list(r.line_numbers)) for r in rejected] == [
        (r["vendor"], r["number"], r["field"], r["lines"]) for r in want["rejected"]]
    for got, expected in zip(rejected, want["rejected"], strict=True):
        assert expected["reason"] in got.reason
    if "same_payload_as" in want:
        other, _, _ = outcome(want["same_payload_as"], kind)
        assert [i.payload() for i in accepted] == [i.payload() for i in other]


def _summary(inv: parse.ParsedInvoice) -> tuple[str, str, str, str, list[int]]:
    h = inv.header
    return (h["vendor_id"], h["invoice_number"], str(h["invoice_total"]), h["document_type"],
            list(inv.source_lines))
