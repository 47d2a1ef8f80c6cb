"""Mapping CSVs as the console reads them before asking X3: the CLI's columns, every row
checked, problems named by line."""

import pytest

from console import uploads


def test_the_cli_columns_per_kind():
    rows = uploads.parse("cost_centers", "\ufeffstampli_code,dimension_type,dimension_value\n"
                         " CC-1 , CCT ,PLANT1\n")
    assert rows[0].values == {"stampli_code": "CC-1", "dimension_type": "CCT",
                              "dimension_value": "PLANT1"} and rows[0].line == 2


@pytest.mark.parametrize("kind,text,dim,message", [
    ("gl", "code,account\n1,2\n", None, "missing column(s) stampli_code, x3_account"),
    ("gl", "stampli_code,x3_account\n", None, "no rows"),
    ("dimension", "stampli_code,dimension_value\nA,B\n", None, "needs its dimension type"),
    ("nope", "a\n1\n", None, "unknown mapping kind"),
])
def test_refused_files(kind, text, dim, message):
    with pytest.raises(uploads.UploadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        uploads.parse(kind, text, dim)


def test_bad_rows_are_named_and_make_the_preview_invalid():
    rows = uploads.parse("gl", "stampli_code,x3_account\n6100,\n6200,A\x1bB\n6300,"
                         + "9" * 31 + "\n6400,6400\n")
    assert [r.problems for r in rows] == [["x3_account is empty"],
                                          ["x3_account is not a valid code"],
                                          ["x3_account is not a valid code"], []]
    assert not uploads.Preview("gl", None, rows).valid
    assert uploads.Preview("gl", None, rows[3:]).valid


def test_too_many_rows():
    text = "stampli_code,x3_account\n" + "A,B\n" * (uploads.MAX_ROWS + 1)
    with pytest.raises(uploads.UploadError, match="more than"):
        uploads.parse("gl", text)
