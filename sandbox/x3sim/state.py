"""The simulator's data: suppliers, accounts, dimensions and invoices in memory, the seed they
start from and return to, and the counters /_sim/state reports.

api1 and GraphQL serve the same `X3State`, so what one transport creates the other finds.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.x3sim.faults import Faults
from sandbox.x3sim.oauth import OAuthState
from sandbox.x3sim.rules import (
    API1_NAMES,
    InvoiceRefs,
    Names,
    ValidationFailed,
    check_invoice,
    check_supplier,
)

DEFAULT_COA = "CONS"
DEFAULT_INVOICE_CLASS = "BPSINVOICE"
SUPPLIER_CLASS = "BPSUPPLIER"
SUPPLIER_NUMBERINGS = ("manual", "sequence")
_SEED_KEYS = ("suppliers", "accounts", "dimensions", "invoices")


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


@dataclass
class _Stats:
    """What the data side counts (requests and faults are counted by Faults)."""

    creates: dict[str, int] = field(default_factory=dict)
    token_refreshes: int = 0
    code_exchanges: int = 0
    regional_calls: dict[str, int] = field(default_factory=dict)  # path -> calls
    calls: dict[str, int] = field(default_factory=dict)  # "query BPSUPPLIER" -> calls served

    def as_dict(self, request_counters: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "requests": request_counters["requests"],
            "creates": dict(self.creates),
            "faults": request_counters["faults"],
            "max_in_flight": request_counters["max_in_flight"],
            "token_refreshes": self.token_refreshes,
            "code_exchanges": self.code_exchanges,
            "regional_calls": dict(self.regional_calls),
            "calls": dict(self.calls),
            "busy_seconds": request_counters["busy_seconds"],
        }


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
        self.faults = Faults(self._lock, rng_seed)
        self.reset()

    # data

    def reset(self) -> None:
        """Back to the seed this state was built with, no faults, zeroed counters, and only the
        initial refresh token valid."""
        self.oauth.reset()
        with self._lock:
            self._load(self._seed)
            self.faults.reset()
            self._stats = _Stats(creates={SUPPLIER_CLASS: 0, self.invoice_class: 0})

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
        lifetime, rotate = self.faults.token_settings()
        status, answer = self.oauth.grant(body, lifetime=lifetime, rotate=rotate, region=region)
        if status == 200:
            with self._lock:
                if body.get("grant_type") == "authorization_code":
                    self._stats.code_exchanges += 1
                else:
                    self._stats.token_refreshes += 1
        return status, answer

    def count_call(self, kind: str) -> None:
        """One API operation served, by kind ("query GACCOUNT", "create supplier", ...)."""
        with self._lock:
            self._stats.calls[kind] = self._stats.calls.get(kind, 0) + 1

    def count_regional(self, path: str) -> None:
        with self._lock:
            calls = self._stats.regional_calls
            calls[path] = calls.get(path, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Everything, as GET /_sim/state answers it."""
        with self._lock:
            result: dict[str, Any] = copy.deepcopy(self._collections())
            result["stats"] = self._stats.as_dict(self.faults.counters())
            result["faults"] = self.faults.settings()
            return result

    def supplier_problems(self, body: Mapping[str, Any], names: Names = API1_NAMES) -> list[str]:
        """Why a create of this supplier would be refused now (empty: it would not)."""
        with self._lock:
            numbered = self.supplier_numbering == "sequence"
            return check_supplier(body, self._suppliers, numbered=numbered, names=names)

    def invoice_problems(self, body: Mapping[str, Any], names: Names = API1_NAMES) -> list[str]:
        """Why a create of this invoice would be refused now (empty: it would not)."""
        with self._lock:
            refs = InvoiceRefs(self._suppliers, self._accounts, self._dimensions, self.coa)
            return check_invoice(body, refs, names=names)

    def create_supplier(self, body: Mapping[str, Any], names: Names = API1_NAMES
                        ) -> dict[str, Any]:
        """Store a supplier; raises ValidationFailed, its problems named through `names`."""
        with self._lock:
            errors = self.supplier_problems(body, names)
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

    def create_invoice(self, body: Mapping[str, Any], names: Names = API1_NAMES
                       ) -> dict[str, Any]:
        """Store a supplier invoice with the next NUM; raises ValidationFailed, its problems
        named through `names`.

        A second invoice with the same BPR + BPRVCR is accepted on purpose: X3 need not refuse
        it, and the connector's tests detect double posting by counting.
        """
        with self._lock:
            errors = self.invoice_problems(body, names)
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
