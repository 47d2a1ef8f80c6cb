"""Tax ids compared as people mean them (issue 11): normalised, EU VAT prefix optional."""

import pytest

from pipeline import taxid, vendors


@pytest.mark.parametrize(("a", "b"), [
    ("94-1234567", "941234567"), ("DE 999 888 777", "DE999888777"),
    ("de-999.888.777", "DE999888777"),
    ("DE999888777", "999888777"), ("EL 123456789", "123456789"), ("ATU12345678", "U12345678"),
    ("GB 123 4567 89", "123456789"),
])
def test_same_tax_id(a, b):
    assert taxid.same_tax_id(a, b) and taxid.same_tax_id(b, a)


@pytest.mark.parametrize(("a", "b"), [
    ("DE999888777", "FR999888777"), ("94-1234567", "94-1234568"), ("", ""), (None, "1"),
    ("DE999888777", "DE99988877"),
])
def test_not_the_same_tax_id(a, b):
    assert not taxid.same_tax_id(a, b)


def test_spellings_cover_the_usual_forms():
    assert {"94-1234567", "941234567", "941 234 567"} <= set(taxid.spellings("941234567"))
    de = set(taxid.spellings("999 888 777", "DE"))
    assert {"DE999888777", "DE 999888777", "DE 999 888 777", "999888777"} <= de
    assert taxid.spellings("") == [] and taxid.spellings(None) == []
    assert len(taxid.spellings("DE 999 888 777", "DE")) <= 16  # stays one short query


@pytest.mark.parametrize(("vendor_id", "code"), [
    ("V-2002", "V-2002"), (" v-2002 ", "V-2002"), ("ACME.01", "ACME.01"), ("A/P-7", "A/P-7"),
    ("x_y", "X_Y"), ("A" * 15, "A" * 15), ("A" * 16, None), ("VENDOR-0000000000001", None),
    ("ACME 01", None), ("", None), ("Müller", None),
])
def test_exact_code_is_the_vendor_id_as_x3_stores_codes(vendor_id, code):
    assert vendors.exact_code(vendor_id) == code


def test_derived_codes_fit_x3():
    for vendor_id in ("V-2002", "A/P-7", "VENDOR-0000000000001", "Müller & Söhne GmbH"):
        code = vendors.supplier_code(vendor_id)
        assert 0 < len(code) <= 15 and vendors.exact_code(code) == code
