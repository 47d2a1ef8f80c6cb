"""Tax ids compared as people mean them, not as they were typed.

`94-1234567` and `941234567` are one US EIN; `DE 999 888 777`, `DE999888777` and `999888777`
are one German VAT id (the EU prefix is often left off). X3 cannot compare normalised values, so
the look-up asks for the usual spellings (`spellings`) and every answer is checked with
`same_tax_id` before it counts.
"""

from __future__ import annotations

import re

# EU VAT prefixes (Greece is EL), plus Northern Ireland's XI and the UK's former GB.
VAT_PREFIXES = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI GB"
    .split())
_COUNTRY_TO_PREFIX = {"GR": "EL"}
_NOISE = re.compile(r"[\s\-./]+")


def compact(tax_id: str | None) -> str:
    """Upper case without spaces, dashes, dots or slashes; "" for nothing."""
    return _NOISE.sub("", tax_id or "").upper()


def split_prefix(tax_id: str | None) -> tuple[str | None, str]:
    """(EU country prefix or None, the rest), both compacted."""
    value = compact(tax_id)
    if len(value) > 4 and value[:2] in VAT_PREFIXES and any(ch.isdigit() for ch in value[2:]):
        return value[:2], value[2:]
    return None, value


def same_tax_id(a: str | None, b: str | None) -> bool:
    """One tax id? Equal once compacted, or equal but for an EU prefix only one of them has."""
    if not compact(a) or not compact(b):
        return False
    (pa, ra), (pb, rb) = split_prefix(a), split_prefix(b)
    return ra == rb and (pa == pb or pa is None or pb is None)


def vat_prefix(country: str | None) -> str | None:
    code = (country or "").strip().upper()
    code = _COUNTRY_TO_PREFIX.get(code, code)
    return code if code in VAT_PREFIXES else None


def spellings(tax_id: str | None, country: str | None = None) -> list[str]:
    """The ways X3 users commonly type this tax id, for a literal look-up (one call, `or`)."""
    if not compact(tax_id):
        return []
    prefix, rest = split_prefix(tax_id)
    prefixes = {None, prefix, vat_prefix(country) if prefix is None else prefix}
    bodies = {rest}
    if prefixes == {None} and rest.isdigit() and len(rest) == 9:
        bodies.add(f"{rest[:2]}-{rest[2:]}")  # US EIN
    if rest.isdigit() and len(rest) > 4:
        bodies.add(" ".join(rest[i:i + 3] for i in range(0, len(rest), 3)))
    out = [(tax_id or "").strip(), (tax_id or "").strip().upper()]
    for p in sorted(prefixes, key=lambda x: x or ""):
        for body in sorted(bodies):
            if not p:
                out.append(body)
                continue
            if " " not in body:  # "DE999 888 777": nobody types it
                out.append(f"{p}{body}")
            out.append(f"{p} {body}")
    return list(dict.fromkeys(s for s in out if s))
