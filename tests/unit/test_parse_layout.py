"""The customer layout file (MLC_STAMPLI_LAYOUT) and the reader entry point: a bad layout is
reported once with every problem; CSV or XML is picked by extension, then by content."""

import io
import json
import sys

import pytest

from pipeline.stampli import parse
from pipeline.stampli.layout import Layout, LayoutError

ROW = ("invoice_number,vendor_id,vendor_name,invoice_date,currency,invoice_total,line_number,"
       "line_amount,gl_account,approval_status\nA1,V1,Acme,2026-11-03,USD,5.00,1,5.00,6100,"
       "Approved\n")


def test_json_layout_file(tmp_path):
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({
        "aliases": {"invoice_number": ["Bill No", "Doc #"], "vendor_id": "Supplier"},
        "encoding": "Windows-1252", "delimiter": "semicolon",
        "date_formats": ["DD.MM.YYYY", "%Y%m%d"], "thousands_separator": ".",
        "decimal_separator": ","}))
    layout = Layout.from_file(path)
    assert layout.field_for(" bill_no ") == "invoice_number"
    assert layout.field_for("DOC #") == "invoice_number"
    assert layout.field_for("Invoice Number") == "invoice_number"  # canonical names still work
    assert (layout.encoding, layout.delimiter) == ("cp1252", ";")
    assert layout.date_formats == ("%d.%m.%Y", "%Y%m%d")


def test_utf8_layout_reads_files_with_and_without_bom(tmp_path):
    path = tmp_path / "layout.json"
    path.write_text('{"encoding": "utf-8"}')
    assert Layout.from_file(path).encoding == "utf-8-sig"


def test_every_problem_of_a_layout_is_listed(tmp_path):
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({
        "aliases": {"invoice_no": "Bill No"}, "encoding": "utf-16", "delimiter": ":",
        "date_formats": ["%Q"], "thousands_separator": ".", "decimal_separator": ".",
        "delimter": ","}))
    with pytest.raises(LayoutError) as err:
        Layout.from_file(path)
    message = str(err.value)
    for problem in ("unknown field 'invoice_no'", "utf-16 is not supported", "':' is not one of",
                    "'%Q' does not round-trip", "separators must differ", "delimter"):
        assert problem in message


def test_unreadable_layout_files(tmp_path):
    with pytest.raises(LayoutError, match="not valid JSON"):
        (tmp_path / "a.json").write_text("{")
        Layout.from_file(tmp_path / "a.json")
    with pytest.raises(LayoutError, match="No such file"):
        Layout.from_file(tmp_path / "missing.json")


def test_yaml_layout_needs_pyyaml(tmp_path, monkeypatch):
    path = tmp_path / "layout.yaml"
    path.write_text("delimiter: '|'\naliases:\n  vendor_id: [Supplier, Supplier Code]\n")
    assert Layout.from_file(path).field_for("supplier code") == "vendor_id"
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(LayoutError, match="PyYAML is not installed"):
        Layout.from_file(path)


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("invoices.csv", ROW, "CsvRows"),
    ("invoices.XML", "<StampliExport/>", "XmlRows"),
    ("invoices.txt", "\ufeff  <?xml version='1.0'?><StampliExport/>", "XmlRows"),
    ("invoices", ROW, "CsvRows"),
])
def test_read_rows_picks_the_format(name, content, kind):
    rows = parse.read_rows(name, io.BytesIO(content.encode()), Layout())
    assert type(rows).__name__ == kind


class Pipe(io.RawIOBase):
    """A stream that cannot seek, like a socket."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # noqa: ANN001
        chunk = self.data.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def test_a_stream_that_cannot_seek_is_spooled_for_the_two_passes():
    layout = Layout()
    result = parse.parse_invoices(parse.read_rows("x.csv", Pipe(ROW.encode()), layout),
                                  layout).collect()
    assert [i.header["invoice_number"] for i in result.invoices] == ["A1"]


def test_a_parse_stream_is_read_once_and_counts_rows():
    layout = Layout()
    stream = parse.parse_invoices(parse.read_rows("x.csv", io.BytesIO(ROW.encode()), layout),
                                  layout)
    assert [type(i).__name__ for i in stream] == ["ParsedInvoice"]
    assert stream.rows == 1
    with pytest.raises(RuntimeError):
        list(stream)


def test_rows_from_memory_still_parse():
    """Rows as plain dicts (a list or a generator) go through the same checks."""
    layout = Layout()
    rows = [(2, {"invoice_number": "A1", "vendor_id": "V1", "vendor_name": "Acme",
                 "invoice_date": "2026-11-03", "currency": "USD", "invoice_total": "5",
                 "line_number": "1", "line_amount": "5", "gl_account": "6100",
                 "approval_status": "Approved"})]
    assert len(parse.parse_invoices(iter(rows), layout).invoices) == 1
    assert len(parse.parse_invoices(rows, layout).invoices) == 1


def test_a_vendor_file_parsed_as_invoices_is_refused_as_a_whole():
    header = "vendor_id,vendor_name,country\nV1,Acme,US\n"
    rows = parse.read_rows("vendors.csv", io.BytesIO(header.encode()), Layout())
    with pytest.raises(parse.FileUnreadable, match="no column for required fields"):
        list(parse.parse_invoices(rows, Layout()))


# -- dimension columns --------------------------------------------------------------------
DIM_CSV = ("invoice_number,vendor_id,vendor_name,invoice_date,currency,invoice_total,line_number,"
           "line_amount,gl_account,cost_center,Project,approval_status\n"
           "A1,V1,Acme,2026-11-03,USD,5.00,1,2.00,6100,CC-1,P-1,Approved\n"
           "A1,V1,Acme,2026-11-03,USD,5.00,2,3.00,6100,CC-1,,Approved\n")


def test_dimension_columns_are_matched_like_headers():
    layout = Layout.from_dict({"aliases": {"project": "Job #"},
                               "dimensions": {"project": "PRJ", "Cost-Center": "CC"}})
    assert layout.dimensions == (("project", "PRJ"), ("cost_center", "CC"))
    assert layout.field_for(" PROJECT ") == layout.field_for("job #") == "project"
    assert layout.field_for("costcenter") == "cost_center"
    assert Layout.from_dict({}).dimensions == ()


def test_lines_carry_their_dimension_values_and_no_key_without_any():
    layout = Layout.from_dict({"dimensions": {"project": "PRJ"}})
    (inv,) = parse.parse_invoices(parse.read_rows("f.csv", io.BytesIO(DIM_CSV.encode()), layout),
                                  layout).invoices
    first, second = inv.payload()["lines"]
    assert (first["cost_center"], first["dimensions"]) == ("CC-1", {"PRJ": "P-1"})
    assert "dimensions" not in second
    # Without the layout the column is an unknown one: the payload is the one it always was.
    plain = parse.parse_invoices(parse.read_rows("f.csv", io.BytesIO(DIM_CSV.encode()),
                                                 Layout()), Layout()).invoices[0]
    assert all("dimensions" not in line for line in plain.payload()["lines"])


def test_every_problem_of_the_dimensions_is_listed():
    with pytest.raises(LayoutError) as err:
        Layout.from_dict({
            "aliases": {"cost_center": "Project", "projet": "X"},
            "dimensions": {"project": "PRJ", "Project ": "prj", "vendor id": "VEN",
                           "dept": "PRJ", "": "DEP", "area": "TOOLONGTYPE1"}})
    message = str(err.value)
    for problem in ("'vendor id' is the known field vendor_id", "'prj' must be 1 to 10",
                    "columns 'project' and 'Project ' are the same header",
                    "both feed dimension PRJ", "column name '' is empty",
                    "'TOOLONGTYPE1' must be", "unknown field 'projet'"):
        assert problem in message
    with pytest.raises(LayoutError, match="alias of cost_center and also the dimension column"):
        Layout.from_dict({"aliases": {"cost_center": "Project"},
                          "dimensions": {"project": "PRJ"}})
    with pytest.raises(LayoutError, match="must map export column names"):
        Layout.from_dict({"dimensions": ["project"]})


def test_a_dimension_column_may_not_feed_the_cost_center_type(tmp_path, monkeypatch):
    from cryptography.fernet import Fernet

    from pipeline import ledger
    from pipeline.config import settings

    path = tmp_path / "layout.json"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@h/db")
    monkeypatch.setenv("MLC_SECRET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("MLC_STAMPLI_LAYOUT", str(path))
    try:
        for dims, ok in (({"dept": "CCT"}, False), ({"dept": "CCT", "cost_center": "CC"}, True),
                         ({"dept": "DEP"}, True)):
            path.write_text(json.dumps({"dimensions": dims}))
            settings.cache_clear()
            ledger.layout.cache_clear()
            if ok:
                assert dict(ledger.layout().dimensions).get("dept") == dims["dept"]
            else:
                with pytest.raises(LayoutError, match="'dept' feeds CCT, which cost_center"):
                    ledger.layout()
    finally:
        settings.cache_clear()
        ledger.layout.cache_clear()
