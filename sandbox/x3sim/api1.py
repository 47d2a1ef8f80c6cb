"""REST api1 (HTTP Basic) over the simulator's state, base `/api1/x3/erp/{FOLDER}`:

    GET  /{CLASS}?representation={CLASS}.$query&where=...&count=N&startIndex=I&orderBy=F desc
    GET  /{CLASS}('KEY')?representation={CLASS}.$details
    POST /{CLASS}?representation={CLASS}.$create        (BPSUPPLIER and the invoice class)

`Api1.serve` answers one request with a `Reply`; a refusal is an `ApiError`, which the server
answers as X3 does (the status and `{"$diagnoses": [...]}`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qs, quote, unquote, urlencode

from sandbox.x3sim.faults import RequestTicket
from sandbox.x3sim.rules import ValidationFailed
from sandbox.x3sim.state import DEFAULT_INVOICE_CLASS, SUPPLIER_CLASS, X3State
from sandbox.x3sim.where import UnknownPropertyError, WhereSyntaxError, compile_where

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
_API_PATH_RE = re.compile(
    r"^/api1/x3/erp/(?P<folder>[^/]+)/(?P<cls>[A-Za-z0-9_]+)(?:\('(?P<key>(?:[^']|'')*)'\))?/?$"
)


_OPERATIONS = {("GET", True): "query", ("GET", False): "read", ("POST", True): "create"}


class ApiError(Exception):
    """Answered as X3 does: the status and `{"$diagnoses": [...]}`."""

    def __init__(
        self, status: int, messages: str | Sequence[str], headers: Mapping[str, str] | None = None
    ) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))
        self.status = status
        self.headers = dict(headers or {})


class DropConnection(Exception):
    """Close the socket without answering (the commit already happened)."""


def diagnoses(messages: Sequence[str]) -> dict[str, Any]:
    return {"$diagnoses": [{"$severity": "error", "$message": m} for m in messages]}


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON body: {exc}") from None


@dataclass(frozen=True)
class Reply:
    """A JSON answer: the server sends it as is."""

    status: int
    payload: Any
    headers: Mapping[str, str] = field(default_factory=dict)


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


class Api1:
    """The api1 endpoint of one folder, served from `state` to one Basic-auth user."""

    def __init__(self, state: X3State, *, username: str, password: str, folder: str) -> None:
        self.state = state
        self.username = username
        self.password = password
        self.folder = folder
        self.classes = resource_classes(state.invoice_class)

    def serve(
        self, method: str, url: SplitResult, body: bytes, authorization: str, base_url: str
    ) -> Reply:
        """One request, faults first (latency, injected errors), then authentication."""
        with self.state.faults.request() as ticket:
            if ticket.fault is not None:
                raise fault_error(ticket)
            self._check_auth(authorization)
            return self._route(method, url, body, base_url)

    def _check_auth(self, header: str) -> None:
        expected = f"{self.username}:{self.password}"
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

    def _route(self, method: str, url: SplitResult, body: bytes, base_url: str) -> Reply:
        match = _API_PATH_RE.match(unquote(url.path))
        if match is None:
            raise ApiError(404, f"No resource at {url.path}")
        if match["folder"] != self.folder:
            raise ApiError(404, f"Unknown endpoint (folder) '{match['folder']}'")
        cls = self.classes.get(match["cls"])
        if cls is None:
            raise ApiError(404, f"Unknown class '{match['cls']}'")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        key = None if match["key"] is None else match["key"].replace("''", "'")
        self.state.count_call(f"{_OPERATIONS.get((method, key is None), method)} {cls.name}")
        if method == "GET" and key is None:
            _require_representation(params, cls, "$query")
            return self._query(cls, params, url, base_url)
        if method == "GET":
            _require_representation(params, cls, "$details")
            return self._read(cls, key)
        if method == "POST" and key is None:
            _require_representation(params, cls, "$create")
            return self._create(cls, body, base_url)
        raise ApiError(405, f"{method} is not supported on {url.path}")

    def _query(
        self, cls: ResourceClass, params: Mapping[str, str], url: SplitResult, base_url: str
    ) -> Reply:
        count = _int_param(params, "count", DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        start = _int_param(params, "startIndex", 1)
        try:
            matches = compile_where(params.get("where"), cls.query_fields)
        except UnknownPropertyError as exc:
            # X3 answers an unknown property with a server error, not a 400.
            raise ApiError(500, f"{exc} in class {cls.name}") from None
        except WhereSyntaxError as exc:
            raise ApiError(400, f"Invalid where clause: {exc}") from None
        found = [r for r in self.state.records(cls.collection) if matches(r)]
        found = _order(found, params.get("orderBy"), cls)
        page = found[start - 1 : start - 1 + count]
        links: dict[str, Any] = {}
        if start - 1 + count < len(found):
            next_params = {**params, "startIndex": str(start + count), "count": str(count)}
            query = urlencode(next_params, quote_via=quote, safe="$")
            links["$next"] = {"$url": f"{base_url}{url.path}?{query}"}
        resources = [_summary(cls, record) for record in page]
        return Reply(
            200,
            {"$itemsPerPage": count, "$startIndex": start, "$resources": resources,
             "$links": links},
        )  # fmt: skip

    def _read(self, cls: ResourceClass, key: str) -> Reply:
        for record in self.state.records(cls.collection):
            if cls.key(record) == key:
                return Reply(200, {"$key": key, **record})
        raise ApiError(404, f"{cls.name} '{key}': record does not exist")

    def _create(self, cls: ResourceClass, body: bytes, base_url: str) -> Reply:
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise ApiError(400, "Body must be a JSON object")
        state = self.state
        creators = {"suppliers": state.create_supplier, "invoices": state.create_invoice}
        create = creators.get(cls.collection)
        if create is None:
            raise ApiError(405, f"{cls.name} cannot be created through this endpoint")
        state.faults.wait_before_commit()
        try:
            record = create(payload)
        except ValidationFailed as exc:
            raise ApiError(400, exc.messages) from None
        if state.faults.should_drop():
            raise DropConnection
        key = cls.key(record)
        location = self._details_url(cls, key, base_url)
        return Reply(201, {"$key": key, **record}, {"Location": location})

    def _details_url(self, cls: ResourceClass, key: str, base_url: str) -> str:
        quoted = quote(key.replace("'", "''"), safe="'-_.~")
        folder = quote(self.folder, safe="")
        return (
            f"{base_url}/api1/x3/erp/{folder}/{cls.name}('{quoted}')"
            f"?representation={cls.name}.$details"
        )


def fault_error(ticket: RequestTicket) -> ApiError:
    if ticket.fault == 500:
        return ApiError(500, "Injected fault: internal server error")
    retry = {"Retry-After": str(ticket.retry_after)}
    if ticket.fault == 429:
        return ApiError(429, "Injected fault: too many requests", retry)
    return ApiError(503, "Service unavailable: the server is overloaded", retry)


def _require_representation(params: Mapping[str, str], cls: ResourceClass, facet: str) -> None:
    expected = f"{cls.name}.{facet}"
    given = params.get("representation")
    if given != expected:
        raise ApiError(400, f"Invalid representation {given!r}, expected '{expected}'")


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
