"""Sage X3 simulator: a real HTTP server speaking both transports of the X3 API contract.

Run it with ``python -m sandbox.x3sim --port 8124`` or start it in-process with
``make_server("127.0.0.1", 0)``. It keeps everything in memory (``X3State``); api1 and GraphQL
serve the same suppliers, accounts, dimensions and invoices.

REST api1 (HTTP Basic), base ``/api1/x3/erp/{FOLDER}``:
    GET  /{CLASS}?representation={CLASS}.$query&where=...&count=N&startIndex=I&orderBy=F desc
    GET  /{CLASS}('KEY')?representation={CLASS}.$details
    POST /{CLASS}?representation={CLASS}.$create        (BPSUPPLIER and the invoice class)
    classes: BPSUPPLIER, GACCOUNT, CACCE and the invoice class (default BPSINVOICE).

Test controls (no auth, never faulted):
    GET  /_sim/health                   {"ok": true}
    GET  /_sim/state                    suppliers, invoices, accounts, dimensions, stats, faults
    GET  /_sim/faults, POST /_sim/faults  any subset of FAULT_DEFAULTS plus
                                        "next_errors": [503, 500, 429] (one per next request)
                                        and "drop_next_commits": N; slow commits:
                                        "slow_commit_rate" + "slow_commit_ms" (a share of
                                        creates commits only after that many ms, whatever the
                                        client did meanwhile) or "slow_next_commits": N
    POST /_sim/reset                    back to the seed, no faults, zeroed stats
    POST /_sim/seed                     replace all data with the posted seed (reset keeps the
                                        original seed)

Supplier numbering (``--supplier-numbering``, ``make_server(supplier_numbering=...)``): manual
(default) refuses a supplier without BPSNUM / code; sequence gives it the next SUP000001, ...
on both transports, as an X3 that numbers suppliers itself does.

Seed (the --seed file, or ``make_server(seed=...)``; every key optional)::

    {"suppliers": [{"BPSNUM": "ACME01", "BPSNAM": "...", "CRN": "...", "EECNUM": "",
                    "CUR": "USD", "BPAADD": "A01", "BPADDRESS": [{...}]}],
     "accounts": [{"COA": "CONS", "ACC": "6100", "DES": "...", "ENAFLG": true}],
     "dimensions": [{"DIE": "CCT", "CCE": "PLANT1", "DES": "...", "ENAFLG": true}],
     "invoices": [{"NUM": "SIV000001", "BPR": "ACME01", ...}]}

GraphQL (OAuth2 bearer, see sandbox/x3sim/graphql.py for what it understands):
    POST /xtrem/api  {"query", "variables"}, headers Authorization: Bearer <token> and
                     x-xtrem-endpoint: {FOLDER} (400 when missing or another folder).
                     401 for a missing, unknown or expired token. A bearer is either an access
                     token from /oauth/token or a connected-app JWT (HS256 signed with the client
                     secret, iss = client id, sub, aud, iat not in the future, exp <= iat + 300).
    POST /oauth/token  {"grant_type": "refresh_token", "refresh_token", "client_id",
                     "client_secret"} -> {"access_token", "refresh_token", "expires_in"};
                     400 invalid_grant for an unknown or already used refresh token, 401
                     invalid_client. The OAuth client is seeded by make_server/main
                     (--client-id demo --client-secret demo-secret --refresh-token initial-rt).
                     Never faulted, so fault tests exercise the API, not the login.
    POST /oauth/token  {"grant_type": "authorization_code", "code", "redirect_uri",
                     "client_id", "client_secret"}: exchanges a one-time code from the consent
                     page (400 invalid_grant when unknown, used, expired or of another region).
    GET  /oauth/authorize?client_id&redirect_uri&state&scope&customer  the consent page: the
                     "user" accepts at once and the simulator calls the redirect_uri back with
                     authorizationCode, state and endpoint (the regional API, {base}/eu), as Sage
                     does. Test knobs in the same query: sim_callback=post (default: a form POST
                     from the simulator), json (a JSON POST) or redirect (302, the browser GETs
                     redirect_uri?...); sim_consent=deny (callback with error=access_denied);
                     sim_region=<name> (default eu; empty: no endpoint, the home region).
    /eu/xtrem/api, /eu/oauth/token  the regional endpoint: tokens issued by a region's token
                     endpoint work on that region's API only (401 elsewhere), and so do codes.
                     /_sim/state reports stats.regional_calls per path.
    GET  /_sim/tokens  refresh and access tokens valid now (tests look for leaks of them).
    POST /_sim/authorize  a new refresh token, as a person re-authorising would get one.
    Faults apply to GraphQL as to api1: latency; 500 is HTTP 500; 429 is HTTP 429 with
    Retry-After (a gateway's answer); 503 and the max_concurrency refusal are HTTP 200 with
    errors[].extensions.code SERVICE_UNAVAILABLE (what the xtrem server itself answers);
    drop_after_commit hangs up after a mutation committed. Token faults: token_lifetime
    (seconds an access token lives, default 300) and rotate_refresh_tokens (default true: a
    used refresh token is refused afterwards). /_sim/state reports stats.token_refreshes.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, quote, unquote, urlencode, urlsplit

from sandbox.x3sim import graphql as gql
from sandbox.x3sim.oauth import REGIONS, OAuthState, consent
from sandbox.x3sim.where import UnknownPropertyError, WhereSyntaxError, compile_where

DEFAULT_FOLDER = "SEED"
DEFAULT_COA = "CONS"
DEFAULT_INVOICE_CLASS = "BPSINVOICE"
SUPPLIER_CLASS = "BPSUPPLIER"
SUPPLIER_CODE_MAX = 15
SUPPLIER_NUMBERINGS = ("manual", "sequence")
DOCUMENT_NUMBER_MAX = 30
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000

FAULT_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "error_rate_500": 0.0,
    "error_rate_503": 0.0,
    "error_rate_429": 0.0,
    "retry_after": 1,
    "drop_after_commit_rate": 0.0,
    # A share of creates (invoices and suppliers) commits only after slow_commit_ms: X3 goes
    # on working on a request whose client gave up, so a look-up made meanwhile finds nothing.
    "slow_commit_rate": 0.0,
    "slow_commit_ms": 0,
    "max_concurrency": 0,  # > 0: more concurrent API calls than this answer 503 (licence cap)
    "token_lifetime": 300,  # seconds an OAuth access token lives
    "rotate_refresh_tokens": True,  # a used refresh token is refused afterwards
}
_FAULT_STATUSES = (500, 503, 429)
_SEED_KEYS = ("suppliers", "accounts", "dimensions", "invoices")
_DECIMAL_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_API_PATH_RE = re.compile(
    r"^/api1/x3/erp/(?P<folder>[^/]+)/(?P<cls>[A-Za-z0-9_]+)(?:\('(?P<key>(?:[^']|'')*)'\))?/?$"
)


def default_seed(coa: str = DEFAULT_COA) -> dict[str, Any]:
    """The master data a fresh simulator holds: the demo's accounts, cost centres, one supplier."""
    return {
        "accounts": [{"COA": coa, "ACC": acc, "ENAFLG": True} for acc in _DEFAULT_ACCOUNTS],
        "dimensions": [{"DIE": "CCT", "CCE": cce, "ENAFLG": True} for cce in _DEFAULT_CCT],
        "suppliers": [
            {
                "BPSNUM": "ACME01",
                "BPSNAM": "Acme Industrial Supply",
                "CRN": "94-1234567",
                "EECNUM": "",
                "CUR": "USD",
                "BPAADD": "A01",
                "BPADDRESS": [
                    {
                        "BPAADD": "A01",
                        "BPAADDLIG": ["1200 Harbor Blvd", "Suite 4", ""],
                        "POSCOD": "94607",
                        "CTY": "Oakland",
                        "SAT": "CA",
                        "CRY": "US",
                    }
                ],
            }
        ],
        "invoices": [],
    }


_DEFAULT_ACCOUNTS = ("6100", "6300", "6500", "2100", "4010")
_DEFAULT_CCT = ("PLANT1", "PLANT2", "ADMIN")


# --- errors --------------------------------------------------------------------------------------


class ApiError(Exception):
    """Answered as X3 does: the status and `{"$diagnoses": [...]}`."""

    def __init__(
        self, status: int, messages: str | Sequence[str], headers: Mapping[str, str] | None = None
    ) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))
        self.status = status
        self.headers = dict(headers or {})


class ValidationFailed(ValueError):
    """A create was refused; every problem found is listed, as X3 lists its diagnoses."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class _DropConnection(Exception):
    """Close the socket without answering (the commit already happened)."""


def diagnoses(messages: Sequence[str]) -> dict[str, Any]:
    return {"$diagnoses": [{"$severity": "error", "$message": m} for m in messages]}


# --- classes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceClass:
    """An X3 class as the api1 endpoint exposes it."""

    name: str
    collection: str  # key in X3State.snapshot()
    key_fields: tuple[str, ...]
    query_fields: tuple[str, ...]  # answered by $query and usable in where/orderBy

    def key(self, record: Mapping[str, Any]) -> str:
        # X3 joins composite keys with "~".
        return "~".join(str(record.get(name, "")) for name in self.key_fields)


def resource_classes(invoice_class: str = DEFAULT_INVOICE_CLASS) -> dict[str, ResourceClass]:
    classes = [
        ResourceClass(
            SUPPLIER_CLASS,
            "suppliers",
            ("BPSNUM",),
            ("BPSNUM", "BPSNAM", "CRN", "EECNUM", "CUR", "BPAADD"),
        ),
        ResourceClass("GACCOUNT", "accounts", ("COA", "ACC"), ("COA", "ACC", "DES", "ENAFLG")),
        ResourceClass("CACCE", "dimensions", ("DIE", "CCE"), ("DIE", "CCE", "DES", "ENAFLG")),
        ResourceClass(
            invoice_class,
            "invoices",
            ("NUM",),
            ("NUM", "BPR", "BPRVCR", "BPRDAT", "ACCDAT", "INVTYP", "SIVTYP", "CUR", "FCY", "CPY",
             "AMTATI", "AMTNOT", "DES"),
        ),
    ]  # fmt: skip
    return {cls.name: cls for cls in classes}


# --- seed ----------------------------------------------------------------------------------------


def normalise_seed(seed: Any) -> dict[str, list[dict[str, Any]]]:
    """A deep copy of `seed` with defaults filled in; ValueError says what is wrong with it."""
    if not isinstance(seed, Mapping):
        raise ValueError("seed must be a JSON object")
    unknown = sorted(set(seed) - set(_SEED_KEYS))
    if unknown:
        raise ValueError(f"unknown seed keys {unknown}; expected some of {list(_SEED_KEYS)}")
    result: dict[str, list[dict[str, Any]]] = {}
    required = {"suppliers": ("BPSNUM",), "accounts": ("COA", "ACC"), "dimensions": ("DIE", "CCE")}
    for name in _SEED_KEYS:
        items = seed.get(name, [])
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise ValueError(f"seed {name} must be a list of objects")
        for item in items:
            missing = [f for f in required.get(name, ()) if not isinstance(item.get(f), str)]
            if missing:
                raise ValueError(f"seed {name} entry {dict(item)} lacks {missing}")
        result[name] = copy.deepcopy([dict(i) for i in items])
    for item in result["accounts"] + result["dimensions"]:
        item.setdefault("ENAFLG", True)
    return result


# --- validation ----------------------------------------------------------------------------------


def _text(
    body: Mapping[str, Any],
    name: str,
    errors: list[str],
    *,
    required: bool = False,
    max_len: int | None = None,
    where: str = "",
) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            errors.append(f"{where}{name}: mandatory field")
        return None
    if not isinstance(value, str):
        errors.append(f"{where}{name}: must be a string, got {json.dumps(value)}")
        return None
    if max_len is not None and len(value) > max_len:
        errors.append(f"{where}{name}: '{value}' is longer than {max_len} characters")
        return None
    return value


def _decimal(
    body: Mapping[str, Any], name: str, errors: list[str], *, required: bool, where: str = ""
) -> None:
    value = body.get(name)
    if value is None:
        if required:
            errors.append(f"{where}{name}: mandatory field")
    elif isinstance(value, bool | int | float):
        # Binary floats lose cents; the contract sends decimals as strings, so refuse numbers.
        errors.append(f"{where}{name}: decimal must be sent as a string, got number {value}")
    elif not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
        errors.append(f"{where}{name}: invalid decimal {json.dumps(value)}")


def _iso_date(body: Mapping[str, Any], name: str, errors: list[str]) -> None:
    value = _text(body, name, errors, required=True)
    if value is not None and (problem := gql.iso_date_problem(name, value)):
        errors.append(problem)


def _check_supplier(
    body: Mapping[str, Any], existing: Mapping[str, Any], *, numbered: bool = False
) -> list[str]:
    """`numbered`: X3 numbers suppliers itself (sequence), so BPSNUM may be left out."""
    errors: list[str] = []
    code = _text(body, "BPSNUM", errors, required=not numbered)
    if code is not None:
        if code != code.upper() or code != code.strip():
            errors.append(f"BPSNUM: supplier code '{code}' must be upper case without spaces")
        elif len(code) > SUPPLIER_CODE_MAX:
            errors.append(f"BPSNUM: '{code}' is longer than {SUPPLIER_CODE_MAX} characters")
        elif code in existing:
            errors.append(f"BPSNUM: record already exists: supplier '{code}'")
    _text(body, "BPSNAM", errors, required=True)
    for name in ("CRN", "EECNUM", "CUR", "BPAADD"):
        _text(body, name, errors)
    addresses = body.get("BPADDRESS", [])
    if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
        errors.append("BPADDRESS: must be a list of address objects")
    else:
        for number, address in enumerate(addresses, start=1):
            _text(address, "BPAADD", errors, required=True, where=f"BPADDRESS {number}: ")
    return errors


@dataclass
class _InvoiceRefs:
    """What an invoice may point at, looked up under the state lock."""

    suppliers: Mapping[str, Any]
    accounts: Mapping[tuple[str, str], Mapping[str, Any]]
    dimensions: Mapping[tuple[str, str], Mapping[str, Any]]
    coa: str


def _check_invoice(body: Mapping[str, Any], refs: _InvoiceRefs) -> list[str]:
    errors: list[str] = []
    supplier = _text(body, "BPR", errors, required=True)
    if supplier is not None and supplier not in refs.suppliers:
        errors.append(f"BPR: supplier '{supplier}' does not exist")
    _text(body, "BPRVCR", errors, required=True, max_len=DOCUMENT_NUMBER_MAX)
    _iso_date(body, "BPRDAT", errors)
    _iso_date(body, "ACCDAT", errors)
    _text(body, "CUR", errors, required=True)
    for name in ("INVTYP", "SIVTYP", "FCY", "CPY", "DES"):
        _text(body, name, errors)
    _decimal(body, "AMTATI", errors, required=True)
    _decimal(body, "AMTNOT", errors, required=False)
    lines = body.get("BPSINVLIG")
    if not isinstance(lines, list) or not lines:
        errors.append("BPSINVLIG: at least one line is required")
    elif not all(isinstance(line, dict) for line in lines):
        errors.append("BPSINVLIG: lines must be objects")
    else:
        for number, line in enumerate(lines, start=1):
            _check_invoice_line(line, f"BPSINVLIG line {number}: ", refs, errors)
    return errors


def _check_invoice_line(
    line: Mapping[str, Any], where: str, refs: _InvoiceRefs, errors: list[str]
) -> None:
    lig = line.get("LIG")
    if not isinstance(lig, int) or isinstance(lig, bool) or lig < 1:
        errors.append(f"{where}LIG: must be a positive integer, got {json.dumps(lig)}")
    account = _text(line, "ACC", errors, required=True, where=where)
    if account is not None:
        found = refs.accounts.get((refs.coa, account))
        if found is None:
            errors.append(f"{where}ACC: account '{account}' does not exist in {refs.coa}")
        elif not found.get("ENAFLG", True):
            errors.append(f"{where}ACC: account '{account}' is inactive in {refs.coa}")
    _decimal(line, "AMTNOTLIN", errors, required=True, where=where)
    _decimal(line, "QTY", errors, required=False, where=where)
    _text(line, "DES", errors, where=where)
    _check_line_dimensions(line, where, refs, errors)


def _check_line_dimensions(
    line: Mapping[str, Any], where: str, refs: _InvoiceRefs, errors: list[str]
) -> None:
    types, values = line.get("DIE", []), line.get("CCE", [])
    if not _is_str_list(types) or not _is_str_list(values):
        errors.append(f"{where}DIE and CCE must be lists of strings")
        return
    if len(types) != len(values):
        errors.append(f"{where}DIE has {len(types)} entries but CCE has {len(values)}")
        return
    for die, cce in zip(types, values, strict=True):
        found = refs.dimensions.get((die, cce))
        if found is None:
            errors.append(f"{where}CCE: dimension '{cce}' of type '{die}' does not exist")
        elif not found.get("ENAFLG", True):
            errors.append(f"{where}CCE: dimension '{cce}' of type '{die}' is inactive")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# --- state ---------------------------------------------------------------------------------------


@dataclass
class _Stats:
    requests: int = 0
    creates: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    token_refreshes: int = 0
    code_exchanges: int = 0
    regional_calls: dict[str, int] = field(default_factory=dict)  # path -> calls

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "creates": dict(self.creates),
            "faults": dict(self.faults),
            "max_in_flight": self.max_in_flight,
            "token_refreshes": self.token_refreshes,
            "code_exchanges": self.code_exchanges,
            "regional_calls": dict(self.regional_calls),
        }


@dataclass(frozen=True)
class RequestTicket:
    """What `begin_request` decided: a fault to answer with, if any."""

    fault: int | None  # HTTP status to answer instead of serving the request
    latency: float  # seconds to wait first
    retry_after: int
    counted: bool  # holds an in-flight slot until end_request


class X3State:
    """The simulator's data, faults and counters; every method is safe across threads."""

    def __init__(
        self,
        seed: Mapping[str, Any] | None = None,
        *,
        coa: str = DEFAULT_COA,
        invoice_class: str = DEFAULT_INVOICE_CLASS,
        rng_seed: int | None = None,
        oauth: OAuthState | None = None,
        supplier_numbering: str = "manual",
    ) -> None:
        if supplier_numbering not in SUPPLIER_NUMBERINGS:
            raise ValueError(f"supplier_numbering must be one of {SUPPLIER_NUMBERINGS}")
        # "sequence": a supplier created without a code gets the next SUP000001, SUP000002...
        self.supplier_numbering = supplier_numbering
        self.oauth = oauth or OAuthState("demo", "demo-secret", "initial-rt")
        self.coa = coa
        self.invoice_class = invoice_class
        self._seed = normalise_seed(default_seed(coa) if seed is None else seed)
        self._lock = threading.RLock()
        self._random = random.Random(rng_seed)
        self._stats = _Stats()
        self.reset()

    # data

    def reset(self) -> None:
        """Back to the seed this state was built with, no faults, zeroed counters, and only the
        initial refresh token valid."""
        self.oauth.reset()
        with self._lock:
            self._load(self._seed)
            self._faults: dict[str, Any] = {
                **FAULT_DEFAULTS,
                "next_errors": [],
                "drop_next_commits": 0,
                "slow_next_commits": 0,
            }
            # Requests being served keep their in-flight slot so end_request stays balanced.
            self._stats = _Stats(
                creates={SUPPLIER_CLASS: 0, self.invoice_class: 0},
                in_flight=self._stats.in_flight,
            )

    def load_seed(self, seed: Mapping[str, Any]) -> None:
        """Replace all data with `seed` (reset() still returns to the original seed)."""
        normalised = normalise_seed(seed)
        with self._lock:
            self._load(normalised)

    def _load(self, seed: Mapping[str, list[dict[str, Any]]]) -> None:
        data = copy.deepcopy(seed)
        self._suppliers = {s["BPSNUM"]: s for s in data["suppliers"]}
        self._accounts = {(a["COA"], a["ACC"]): a for a in data["accounts"]}
        self._dimensions = {(d["DIE"], d["CCE"]): d for d in data["dimensions"]}
        self._invoices: list[dict[str, Any]] = []
        self._next_invoice = 1
        self._next_supplier = 1
        for invoice in data["invoices"]:
            self._number_invoice(invoice)

    def _number_invoice(self, invoice: dict[str, Any]) -> None:
        num = invoice.get("NUM")
        if not isinstance(num, str) or not num:
            num = invoice["NUM"] = f"SIV{self._next_invoice:06d}"
        digits = num[3:] if num.startswith("SIV") else ""
        if digits.isdigit():
            self._next_invoice = max(self._next_invoice, int(digits) + 1)
        self._invoices.append(invoice)

    def records(self, collection: str) -> list[dict[str, Any]]:
        """Copies of one collection's records ("suppliers", "accounts", ...) in insertion order."""
        with self._lock:
            return copy.deepcopy(self._collections()[collection])

    def _collections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "suppliers": list(self._suppliers.values()),
            "accounts": list(self._accounts.values()),
            "dimensions": list(self._dimensions.values()),
            "invoices": self._invoices,
        }

    def has(self, collection: str, key: str) -> bool:
        return self.find(collection, key) is not None

    def find(self, collection: str, key: Any) -> dict[str, Any] | None:
        """A copy of one supplier (by code), account or dimension (by (type, value)) or None."""
        with self._lock:
            table = {"suppliers": self._suppliers, "accounts": self._accounts,
                     "dimensions": self._dimensions}[collection]
            found = table.get(key)
            return copy.deepcopy(found) if found is not None else None

    def token_grant(self, body: Any, region: str | None = None) -> tuple[int, dict[str, Any]]:
        """Answer the OAuth token endpoint with the current token faults."""
        with self._lock:
            lifetime, rotate = self._faults["token_lifetime"], self._faults["rotate_refresh_tokens"]
        status, answer = self.oauth.grant(body, lifetime=lifetime, rotate=rotate, region=region)
        if status == 200:
            with self._lock:
                if body.get("grant_type") == "authorization_code":
                    self._stats.code_exchanges += 1
                else:
                    self._stats.token_refreshes += 1
        return status, answer

    def count_regional(self, path: str) -> None:
        with self._lock:
            calls = self._stats.regional_calls
            calls[path] = calls.get(path, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Everything, as GET /_sim/state answers it."""
        with self._lock:
            result: dict[str, Any] = copy.deepcopy(self._collections())
            result["stats"] = self._stats.as_dict()
            result["faults"] = copy.deepcopy(self._faults)
            return result

    def create_supplier(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a supplier; raises ValidationFailed."""
        with self._lock:
            numbered = self.supplier_numbering == "sequence"
            errors = _check_supplier(body, self._suppliers, numbered=numbered)
            if errors:
                raise ValidationFailed(errors)
            record = copy.deepcopy(dict(body))
            if not record.get("BPSNUM"):
                record["BPSNUM"] = self._supplier_number()
            for name in ("CRN", "EECNUM", "CUR"):
                record.setdefault(name, "")
            record.setdefault("BPADDRESS", [])
            record.setdefault("BPAADD", (record["BPADDRESS"] or [{}])[0].get("BPAADD", ""))
            self._suppliers[record["BPSNUM"]] = record
            self._count_create(SUPPLIER_CLASS)
            return copy.deepcopy(record)

    def _supplier_number(self) -> str:
        while f"SUP{self._next_supplier:06d}" in self._suppliers:
            self._next_supplier += 1
        code = f"SUP{self._next_supplier:06d}"
        self._next_supplier += 1
        return code

    def create_invoice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a supplier invoice with the next NUM; raises ValidationFailed.

        A second invoice with the same BPR + BPRVCR is accepted on purpose: X3 need not refuse
        it, and the connector's tests detect double posting by counting.
        """
        with self._lock:
            refs = _InvoiceRefs(self._suppliers, self._accounts, self._dimensions, self.coa)
            errors = _check_invoice(body, refs)
            if errors:
                raise ValidationFailed(errors)
            # X3 numbers the document itself: a NUM in the request is ignored.
            fields = {k: v for k, v in copy.deepcopy(dict(body)).items() if k != "NUM"}
            record = {"NUM": "", **fields}
            for line in record["BPSINVLIG"]:
                line.setdefault("DIE", [])
                line.setdefault("CCE", [])
            self._number_invoice(record)
            self._count_create(self.invoice_class)
            return copy.deepcopy(record)

    def _count_create(self, class_name: str) -> None:
        self._stats.creates[class_name] = self._stats.creates.get(class_name, 0) + 1

    # faults

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._faults)

    def set_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the fault settings; ValueError names a bad key or value."""
        checked = {name: _check_fault(name, value) for name, value in changes.items()}
        with self._lock:
            self._faults.update(checked)
            return copy.deepcopy(self._faults)

    def begin_request(self) -> RequestTicket:
        """Count an API request (api1 or GraphQL) and decide whether it is faulted."""
        with self._lock:
            stats, faults = self._stats, self._faults
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            latency = faults["latency_ms"] / 1000
            retry_after = faults["retry_after"]
            limit = faults["max_concurrency"]
            if limit and stats.in_flight > limit:
                stats.in_flight -= 1  # a refused call must not hold a session slot
                self._count_fault("busy")
                return RequestTicket(503, latency, retry_after, counted=False)
            fault = self._pick_fault()
            return RequestTicket(fault, latency, retry_after, counted=True)

    def _pick_fault(self) -> int | None:
        queued = self._faults["next_errors"]
        if queued:
            fault = queued.pop(0)
        else:
            roll, fault, threshold = self._random.random(), None, 0.0
            for status in _FAULT_STATUSES:
                threshold += self._faults[f"error_rate_{status}"]
                if roll < threshold:
                    fault = status
                    break
        if fault is not None:
            self._count_fault(str(fault))
        return fault

    def end_request(self, ticket: RequestTicket) -> None:
        if ticket.counted:
            with self._lock:
                self._stats.in_flight -= 1

    def wait_before_commit(self) -> float:
        """Before a create commits: sleep slow_commit_ms for a share of creates (or the next
        slow_next_commits), outside the lock. Returns the seconds slept."""
        with self._lock:
            faults = self._faults
            if faults["slow_next_commits"] > 0:
                faults["slow_next_commits"] -= 1
                slow = True
            else:
                slow = self._random.random() < faults["slow_commit_rate"]
            delay = faults["slow_commit_ms"] / 1000 if slow else 0.0
            if delay:
                self._count_fault("slow_commit")
        if delay:
            time.sleep(delay)
        return delay

    def should_drop(self) -> bool:
        """After a commit: hang up instead of answering?"""
        with self._lock:
            if self._faults["drop_next_commits"] > 0:
                self._faults["drop_next_commits"] -= 1
                drop = True
            else:
                drop = self._random.random() < self._faults["drop_after_commit_rate"]
            if drop:
                self._count_fault("drop")
            return drop

    def _count_fault(self, kind: str) -> None:
        self._stats.faults[kind] = self._stats.faults.get(kind, 0) + 1


def _check_fault(name: str, value: Any) -> Any:
    """The validated value for one fault setting."""
    if name == "rotate_refresh_tokens":
        if not isinstance(value, bool):
            raise ValueError(f"fault {name}: must be true or false, got {value!r}")
        return value
    if isinstance(value, bool):
        raise ValueError(f"fault {name}: {value!r} is not a number")
    if name in ("error_rate_500", "error_rate_503", "error_rate_429", "drop_after_commit_rate",
                "slow_commit_rate"):
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"fault {name}: rate must be between 0 and 1, got {value!r}")
        return float(value)
    if name in ("latency_ms", "retry_after", "max_concurrency", "drop_next_commits",
                "slow_commit_ms", "slow_next_commits"):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"fault {name}: must be a non-negative integer, got {value!r}")
        return value
    if name == "token_lifetime":
        if not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"fault {name}: must be a positive number of seconds, got {value!r}")
        return value
    if name == "next_errors":
        if not isinstance(value, list) or any(v not in _FAULT_STATUSES for v in value):
            raise ValueError(f"fault next_errors: must be a list of {list(_FAULT_STATUSES)}")
        return list(value)
    raise ValueError(f"unknown fault {name!r}")


# --- HTTP ----------------------------------------------------------------------------------------


class X3Server(ThreadingHTTPServer):
    """The listening server; request handlers reach the state and settings through it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        state: X3State,
        *,
        username: str,
        password: str,
        folder: str,
        verbose: bool = False,
        graphql_invoice_package: str = "x3Accounting",
        graphql_invoice_node: str = "supplierBpInvoice",
    ) -> None:
        self.state = state
        self.username = username
        self.password = password
        self.folder = folder
        self.verbose = verbose
        self.classes = resource_classes(state.invoice_class)
        self.graphql_schema = gql.schema(graphql_invoice_package, graphql_invoice_node)
        super().__init__(address, X3Handler)


_Route = Callable[["X3Handler", str, SplitResult, bytes], None]


class X3Handler(BaseHTTPRequestHandler):
    server: X3Server
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
    server_version = "X3Simulator/1.0"
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms on Linux), so every call looked 40 ms slower than the latency asked.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.region: str | None = None
        try:
            body = self._read_body()
            head, _, rest = url.path.lstrip("/").partition("/")
            if head in REGIONS and rest:
                # A regional endpoint: the same API under /{region}; what it serves is routed
                # by the path after the prefix, and the tokens it issues are bound to it.
                self.server.state.count_regional(url.path)
                self.region, url = head, url._replace(path="/" + rest)
                if url.path not in ("/xtrem/api", "/oauth/token"):
                    raise ApiError(404, f"No regional resource at {self.path}")
            self._route(url.path)(self, method, url, body)
        except ApiError as exc:
            self._send_json(exc.status, diagnoses(exc.messages), exc.headers)
        except _DropConnection:
            self._hang_up()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout) while a slow commit went on: nobody to answer.
            self.close_connection = True
        except Exception as exc:  # a simulator bug: say so instead of killing the connection
            traceback.print_exc(file=sys.stderr)
            self._send_json(500, diagnoses([f"simulator error: {exc!r}"]))

    @staticmethod
    def _route(path: str) -> _Route:
        if path.startswith("/api1/"):
            return X3Handler._api1
        if path.startswith("/_sim/"):
            return X3Handler._sim
        if path == "/xtrem/api":
            return X3Handler._graphql
        if path == "/oauth/token":
            return X3Handler._token
        if path == "/oauth/authorize":
            return X3Handler._authorize
        return X3Handler._not_found

    def _not_found(self, method: str, url: SplitResult, body: bytes) -> None:
        raise ApiError(404, f"No resource at {url.path}")

    # --- GraphQL and OAuth

    def _graphql(self, method: str, url: SplitResult, body: bytes) -> None:
        if method != "POST":
            raise ApiError(405, "GraphQL takes POST")
        state = self.server.state
        ticket = state.begin_request()
        try:
            if ticket.latency:
                time.sleep(ticket.latency)
            if ticket.fault is not None:
                self._graphql_fault(ticket)
                return
            refused = state.oauth.check_bearer(self.headers.get("Authorization"), self.region)
            if refused:
                self._send_json(401, gql.error_payload(refused, "UNAUTHENTICATED"),
                                {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                return
            endpoint = self.headers.get("x-xtrem-endpoint")
            if endpoint != self.server.folder:
                self._send_json(400, gql.error_payload(
                    f"unknown x-xtrem-endpoint {endpoint!r}", "BAD_REQUEST"))
                return
            result = gql.execute(state, self._json_body(body), self.server.graphql_schema)
            if result.committed and state.should_drop():
                raise _DropConnection
            self._send_json(200, result.payload)
        finally:
            state.end_request(ticket)

    def _graphql_fault(self, ticket: RequestTicket) -> None:
        if ticket.fault == 500:
            self._send_json(500, gql.error_payload("Injected fault: internal server error",
                                                   "INTERNAL_SERVER_ERROR"))
        elif ticket.fault == 429:
            self._send_json(429, gql.error_payload("Injected fault: too many requests",
                                                   "TOO_MANY_REQUESTS"),
                            {"Retry-After": str(ticket.retry_after)})
        else:  # the xtrem server answers its own overload inside GraphQL, with HTTP 200
            self._send_json(200, gql.error_payload("Service unavailable: the server is "
                                                   "overloaded", "SERVICE_UNAVAILABLE"))

    def _token(self, method: str, url: SplitResult, body: bytes) -> None:
        if method != "POST":
            raise ApiError(405, "the token endpoint takes POST")
        status, answer = self.server.state.token_grant(self._token_body(body), self.region)
        self._send_json(status, answer, {"Cache-Control": "no-store"})

    def _token_body(self, body: bytes) -> Any:
        """The token request: JSON (what the contract sends), or a form (RFC 6749's own)."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        return self._json_body(body or b"{}")

    def _authorize(self, method: str, url: SplitResult, body: bytes) -> None:
        if method != "GET":
            raise ApiError(405, "the authorisation page takes GET")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        status, headers, page = consent(self.server.state.oauth, params, self._base_url())
        data = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # --- plumbing

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, f"Invalid Content-Length {length!r}") from None
        return self.rfile.read(size)

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _hang_up(self) -> None:
        # The client must see a dropped connection, not a response: no bytes, then FIN.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        if not host:
            address, port = self.server.server_address[:2]
            host = f"{address}:{port}"
        return f"http://{host}"

    @staticmethod
    def _json_body(body: bytes) -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"Invalid JSON body: {exc}") from None

    # --- /_sim

    def _sim(self, method: str, url: SplitResult, body: bytes) -> None:
        state = self.server.state
        action = (method, url.path.rstrip("/"))
        if action == ("GET", "/_sim/health"):
            self._send_json(200, {"ok": True})
        elif action == ("GET", "/_sim/state"):
            self._send_json(200, state.snapshot())
        elif action == ("GET", "/_sim/faults"):
            self._send_json(200, state.faults())
        elif action == ("POST", "/_sim/faults"):
            self._send_json(200, _bad_request_on_value_error(state.set_faults, body))
        elif action == ("POST", "/_sim/reset"):
            state.reset()
            self._send_json(200, {"reset": True})
        elif action == ("GET", "/_sim/tokens"):
            self._send_json(200, state.oauth.tokens())
        elif action == ("POST", "/_sim/authorize"):
            self._send_json(200, {"refresh_token": state.oauth.authorize()})
        elif action == ("POST", "/_sim/seed"):
            _bad_request_on_value_error(state.load_seed, body)
            self._send_json(200, state.snapshot())
        else:
            raise ApiError(404, f"No simulator control {method} {url.path}")

    # --- /api1

    def _api1(self, method: str, url: SplitResult, body: bytes) -> None:
        state = self.server.state
        ticket = state.begin_request()
        try:
            if ticket.latency:
                time.sleep(ticket.latency)
            if ticket.fault is not None:
                raise _fault_error(ticket)
            self._check_auth()
            self._serve_api1(method, url, body)
        finally:
            state.end_request(ticket)

    def _check_auth(self) -> None:
        expected = f"{self.server.username}:{self.server.password}"
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            given = None
        if scheme.lower() != "basic" or given != expected:
            raise ApiError(
                401, "Authentication failed: invalid user or password",
                {"WWW-Authenticate": 'Basic realm="Sage X3"'},
            )  # fmt: skip

    def _serve_api1(self, method: str, url: SplitResult, body: bytes) -> None:
        match = _API_PATH_RE.match(unquote(url.path))
        if match is None:
            raise ApiError(404, f"No resource at {url.path}")
        if match["folder"] != self.server.folder:
            raise ApiError(404, f"Unknown endpoint (folder) '{match['folder']}'")
        cls = self.server.classes.get(match["cls"])
        if cls is None:
            raise ApiError(404, f"Unknown class '{match['cls']}'")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        key = None if match["key"] is None else match["key"].replace("''", "'")
        if method == "GET" and key is None:
            self._require_representation(params, cls, "$query")
            self._query(cls, params, url)
        elif method == "GET":
            self._require_representation(params, cls, "$details")
            self._read(cls, key)
        elif method == "POST" and key is None:
            self._require_representation(params, cls, "$create")
            self._create(cls, body)
        else:
            raise ApiError(405, f"{method} is not supported on {url.path}")

    @staticmethod
    def _require_representation(params: Mapping[str, str], cls: ResourceClass, facet: str) -> None:
        expected = f"{cls.name}.{facet}"
        given = params.get("representation")
        if given != expected:
            raise ApiError(400, f"Invalid representation {given!r}, expected '{expected}'")

    def _query(self, cls: ResourceClass, params: Mapping[str, str], url: SplitResult) -> None:
        count = _int_param(params, "count", DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        start = _int_param(params, "startIndex", 1)
        try:
            matches = compile_where(params.get("where"), cls.query_fields)
        except UnknownPropertyError as exc:
            # X3 answers an unknown property with a server error, not a 400.
            raise ApiError(500, f"{exc} in class {cls.name}") from None
        except WhereSyntaxError as exc:
            raise ApiError(400, f"Invalid where clause: {exc}") from None
        found = [r for r in self.server.state.records(cls.collection) if matches(r)]
        found = _order(found, params.get("orderBy"), cls)
        page = found[start - 1 : start - 1 + count]
        links: dict[str, Any] = {}
        if start - 1 + count < len(found):
            next_params = {**params, "startIndex": str(start + count), "count": str(count)}
            query = urlencode(next_params, quote_via=quote, safe="$")
            links["$next"] = {"$url": f"{self._base_url()}{url.path}?{query}"}
        resources = [_summary(cls, record) for record in page]
        self._send_json(
            200,
            {"$itemsPerPage": count, "$startIndex": start, "$resources": resources,
             "$links": links},
        )  # fmt: skip

    def _read(self, cls: ResourceClass, key: str) -> None:
        for record in self.server.state.records(cls.collection):
            if cls.key(record) == key:
                self._send_json(200, {"$key": key, **record})
                return
        raise ApiError(404, f"{cls.name} '{key}': record does not exist")

    def _create(self, cls: ResourceClass, body: bytes) -> None:
        payload = self._json_body(body)
        if not isinstance(payload, dict):
            raise ApiError(400, "Body must be a JSON object")
        state = self.server.state
        creators = {"suppliers": state.create_supplier, "invoices": state.create_invoice}
        create = creators.get(cls.collection)
        if create is None:
            raise ApiError(405, f"{cls.name} cannot be created through this endpoint")
        state.wait_before_commit()
        try:
            record = create(payload)
        except ValidationFailed as exc:
            raise ApiError(400, exc.messages) from None
        if state.should_drop():
            raise _DropConnection
        key = cls.key(record)
        self._send_json(201, {"$key": key, **record}, {"Location": self._details_url(cls, key)})

    def _details_url(self, cls: ResourceClass, key: str) -> str:
        quoted = quote(key.replace("'", "''"), safe="'-_.~")
        folder = quote(self.server.folder, safe="")
        return (
            f"{self._base_url()}/api1/x3/erp/{folder}/{cls.name}('{quoted}')"
            f"?representation={cls.name}.$details"
        )


def _bad_request_on_value_error(action: Callable[[dict[str, Any]], Any], body: bytes) -> Any:
    """Run a /_sim action on the posted JSON object; its ValueError is the client's fault."""
    payload = X3Handler._json_body(body or b"{}")
    if not isinstance(payload, dict):
        raise ApiError(400, "Body must be a JSON object")
    try:
        return action(payload)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _fault_error(ticket: RequestTicket) -> ApiError:
    if ticket.fault == 500:
        return ApiError(500, "Injected fault: internal server error")
    retry = {"Retry-After": str(ticket.retry_after)}
    if ticket.fault == 429:
        return ApiError(429, "Injected fault: too many requests", retry)
    return ApiError(503, "Service unavailable: the server is overloaded", retry)


def _int_param(
    params: Mapping[str, str], name: str, default: int, *, maximum: int | None = None
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid {name} {raw!r}") from None
    if value < 1 or (maximum is not None and value > maximum):
        raise ApiError(400, f"{name} out of range: {value}")
    return value


def _order(
    records: list[dict[str, Any]], order_by: str | None, cls: ResourceClass
) -> list[dict[str, Any]]:
    """Apply `orderBy=F1 desc,F2`; without it, records stay in insertion order."""
    if not order_by or not order_by.strip():
        return records
    terms = []
    for term in order_by.split(","):
        name, _, direction = term.strip().partition(" ")
        direction = direction.strip().lower() or "asc"
        if name not in cls.query_fields:
            raise ApiError(500, f"Unknown property '{name}' in class {cls.name}")
        if direction not in ("asc", "desc"):
            raise ApiError(400, f"Invalid orderBy direction {direction!r}")
        terms.append((name, direction == "desc"))
    for name, descending in reversed(terms):  # stable sorts, least significant term first
        records.sort(key=lambda r, n=name: ("" if r.get(n) is None else str(r.get(n))),
                     reverse=descending)  # fmt: skip
    return records


def _summary(cls: ResourceClass, record: Mapping[str, Any]) -> dict[str, Any]:
    fields = {name: record[name] for name in cls.query_fields if name in record}
    return {"$key": cls.key(record), **fields}


# --- entry points --------------------------------------------------------------------------------


def make_server(
    host: str,
    port: int,
    *,
    username: str = "admin",
    password: str = "admin",  # noqa: S107 (the simulator's well-known demo credentials)
    folder: str = DEFAULT_FOLDER,
    seed: Mapping[str, Any] | None = None,
    coa: str = DEFAULT_COA,
    invoice_class: str = DEFAULT_INVOICE_CLASS,
    verbose: bool = False,
    client_id: str = "demo",
    client_secret: str = "demo-secret",  # noqa: S107 (demo OAuth client)
    refresh_token: str = "initial-rt",  # noqa: S107
    jwt_audience: str | None = None,
    graphql_invoice_package: str = "x3Accounting",
    graphql_invoice_node: str = "supplierBpInvoice",
    supplier_numbering: str = "manual",
) -> X3Server:
    """A bound, not yet serving simulator (port 0 picks a free port: see server_address)."""
    oauth = OAuthState(client_id, client_secret, refresh_token, audience=jwt_audience)
    state = X3State(seed, coa=coa, invoice_class=invoice_class, oauth=oauth,
                    supplier_numbering=supplier_numbering)
    return X3Server(
        (host, port), state, username=username, password=password, folder=folder,
        verbose=verbose, graphql_invoice_package=graphql_invoice_package,
        graphql_invoice_node=graphql_invoice_node,
    )


class _Stop(Exception):
    """Raised by the signal handler to leave serve_forever."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.x3sim", description="Sage X3 simulator (api1 + GraphQL)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8124, help="0 picks a free port")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help="X3 endpoint, e.g. SEED")
    parser.add_argument("--seed", metavar="FILE.json", help="master data (default: demo seed)")
    parser.add_argument("--coa", default=DEFAULT_COA, help="chart of accounts invoices use")
    parser.add_argument("--invoice-class", default=DEFAULT_INVOICE_CLASS)
    parser.add_argument("--supplier-numbering", choices=SUPPLIER_NUMBERINGS, default="manual",
                        help="sequence: X3 numbers a supplier created without a code")
    parser.add_argument("--client-id", default="demo", help="OAuth / connected-app client id")
    parser.add_argument("--client-secret", default="demo-secret")
    parser.add_argument("--refresh-token", default="initial-rt", help="initially valid")
    parser.add_argument("--jwt-audience", help="required JWT aud (default: any)")
    parser.add_argument("--graphql-invoice-package", default="x3Accounting")
    parser.add_argument("--graphql-invoice-node", default="supplierBpInvoice")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    seed = None
    if args.seed:
        try:
            with open(args.seed, encoding="utf-8") as handle:
                seed = json.load(handle)
            normalise_seed(seed)
        except (OSError, ValueError) as exc:
            print(f"x3sim: cannot use seed {args.seed}: {exc}", file=sys.stderr)
            return 2
    server = make_server(
        args.host, args.port, username=args.user, password=args.password, folder=args.folder,
        seed=seed, coa=args.coa, invoice_class=args.invoice_class, verbose=args.verbose,
        supplier_numbering=args.supplier_numbering,
        client_id=args.client_id, client_secret=args.client_secret,
        refresh_token=args.refresh_token, jwt_audience=args.jwt_audience,
        graphql_invoice_package=args.graphql_invoice_package,
        graphql_invoice_node=args.graphql_invoice_node,
    )  # fmt: skip
    host, port = server.server_address[:2]
    print(f"X3 simulator listening on http://{host}:{port}", flush=True)
    # Both stop cleanly; SIGINT is set explicitly because a shell's background job ignores it.
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        server.server_close()
    return 0

