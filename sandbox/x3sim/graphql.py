"""The simulator's GraphQL endpoint (`POST /xtrem/api`): the contract's operations over the same
data api1 serves (X3State), so a supplier created through one transport is found through the
other.

Operations are identified by their selection path: `<package> { <node> { query|create } }`.
Anything the contract does not describe (an unknown package, node, field, filter property or
input field) is a GraphQL error, so a client that strays fails here rather than at a customer.
Filters are JSON strings holding Mongo-like objects: `{"code": "X"}`, `{"code": {"_eq": "X"}}`,
operators _eq _ne _in _nin _gt _gte _lt _lte, combinators _and _or _not.
Creates map their input to the api1 body and pass api1's rules (graphql_input.py, rules.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.x3sim import graphql_input as gin
from sandbox.x3sim.gqlparse import Field, GraphQLSyntaxError, Operation, parse, resolve
from sandbox.x3sim.rules import ValidationFailed

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000


class GraphQLError(Exception):
    def __init__(self, messages: str | list[str], code: str = "BAD_USER_INPUT",
                 path: list[str] | None = None) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))
        self.code = code
        self.path = path or []

    def payload(self) -> dict[str, Any]:
        return {"data": None, "errors": [
            {"message": m, "path": self.path, "extensions": {"code": self.code}}
            for m in self.messages]}


def error_payload(message: str, code: str) -> dict[str, Any]:
    return GraphQLError(message, code).payload()


@dataclass(frozen=True)
class NodeType:
    """A node as GraphQL shows it, read from the api1 record of one collection."""

    type_name: str
    collection: str
    fields: Mapping[str, Callable[[Mapping[str, Any]], Any]]
    create: str | None = None  # name of the X3State-side creator, if the node can be created


def _get(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda record: record.get(name)


def _flag(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda record: bool(record.get(name, True))


SUPPLIER = NodeType("Supplier", "suppliers", {
    "code": _get("BPSNUM"), "companyName1": _get("BPSNAM"), "taxIdNumber": _get("CRN"),
    "europeanUnionVatNumber": _get("EECNUM"), "currency": _get("CUR"),
    "isActive": lambda r: True,
}, create="supplier")
ACCOUNT = NodeType("Account", "accounts", {
    "chartOfAccounts": _get("COA"), "code": _get("ACC"), "description": _get("DES"),
    "isActive": _flag("ENAFLG"),
})
DIMENSION = NodeType("Dimension", "dimensions", {
    "dimensionType": _get("DIE"), "dimension": _get("CCE"), "description": _get("DES"),
    "isActive": _flag("ENAFLG"),
})


def invoice_type(node: str) -> NodeType:
    return NodeType(node[:1].upper() + node[1:], "invoices", {
        "id": _get("NUM"), "billBySupplier": _get("BPR"), "sourceDocument": _get("BPRVCR"),
        "sourceDocumentDate": _get("BPRDAT"), "accountingDate": _get("ACCDAT"),
        "invoiceType": _get("INVTYP"), "category": _get("category"), "currency": _get("CUR"),
        "company": _get("CPY"), "site": _get("FCY"), "totalAmountIncludingTax": _get("AMTATI"),
    }, create="invoice")


def schema(invoice_package: str, invoice_node: str) -> dict[str, dict[str, NodeType]]:
    packages: dict[str, dict[str, NodeType]] = {
        "x3MasterData": {"supplier": SUPPLIER},
        "x3FinanceData": {"account": ACCOUNT, "dimension": DIMENSION},
    }
    packages.setdefault(invoice_package, {})[invoice_node] = invoice_type(invoice_node)
    return packages


@dataclass
class Result:
    payload: dict[str, Any]
    committed: bool = False  # a create happened: the caller may drop the answer (fault)


def execute(state: Any, request: Any, packages: dict[str, dict[str, NodeType]]) -> Result:
    """Run one request body ({"query", "variables"}) against `state` (an X3State)."""
    try:
        if not isinstance(request, dict) or not isinstance(request.get("query"), str):
            raise GraphQLError("body must be {\"query\": ..., \"variables\": {...}}",
                               "GRAPHQL_PARSE_FAILED")
        variables = request.get("variables") or {}
        if not isinstance(variables, dict):
            raise GraphQLError("variables must be an object", "BAD_USER_INPUT")
        try:
            op = parse(request["query"])
        except GraphQLSyntaxError as exc:
            raise GraphQLError(f"Syntax Error: {exc}", "GRAPHQL_PARSE_FAILED") from None
        return _run(state, op, variables, packages)
    except GraphQLError as exc:
        return Result(exc.payload())


def _run(state: Any, op: Operation, variables: dict[str, Any],
         packages: dict[str, dict[str, NodeType]]) -> Result:
    data: dict[str, Any] = {}
    committed = False
    for pkg_field in op.selections:
        nodes = packages.get(pkg_field.name)
        if nodes is None:
            raise GraphQLError(f"Cannot query field '{pkg_field.name}' on type "
                               f"'{op.kind.title()}'", "GRAPHQL_VALIDATION_FAILED")
        pkg_out: dict[str, Any] = {}
        for node_field in pkg_field.selections or _need_selection(pkg_field):
            node = nodes.get(node_field.name)
            if node is None:
                raise GraphQLError(f"Cannot query field '{node_field.name}' on type "
                                   f"'{pkg_field.name}'", "GRAPHQL_VALIDATION_FAILED")
            node_out: dict[str, Any] = {}
            for op_field in node_field.selections or _need_selection(node_field):
                path = [pkg_field.key, node_field.key, op_field.key]
                state.count_call(f"{op_field.name} {node_field.name}")
                if op.kind == "query" and op_field.name == "query":
                    node_out[op_field.key] = _query(state, node, op_field, op, variables, path)
                elif op.kind == "mutation" and op_field.name == "create" and node.create:
                    node_out[op_field.key] = _create(state, node, op_field, op, variables, path)
                    committed = True
                else:
                    raise GraphQLError(f"Cannot query field '{op_field.name}' on "
                                       f"'{node.type_name}' in a {op.kind}",
                                       "GRAPHQL_VALIDATION_FAILED")
            pkg_out[node_field.key] = node_out
        data[pkg_field.key] = pkg_out
    return Result({"data": data}, committed)


def _need_selection(f: Field) -> list[Field]:
    raise GraphQLError(f"Field '{f.name}' must have a selection of subfields",
                       "GRAPHQL_VALIDATION_FAILED")


def _args(f: Field, op: Operation, variables: dict[str, Any],
          allowed: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Arguments of `f`, each variable checked against its declared type."""
    out = {}
    for name, raw in f.args.items():
        if name not in allowed:
            raise GraphQLError(f"Unknown argument '{name}' on field '{f.name}'",
                               "GRAPHQL_VALIDATION_FAILED")
        var_name = getattr(raw, "name", None)
        if var_name is not None:
            declared = op.variables.get(var_name)
            if declared is None:
                raise GraphQLError(f"Variable '${var_name}' is not defined",
                                   "GRAPHQL_VALIDATION_FAILED")
            if declared.type not in allowed[name]:
                raise GraphQLError(
                    f"Variable '${var_name}' of type '{declared.type}' used in position "
                    f"expecting '{allowed[name][0]}'", "GRAPHQL_VALIDATION_FAILED")
        out[name] = resolve(raw, variables)
    return out


# --- query -------------------------------------------------------------------------------------


def _query(state: Any, node: NodeType, f: Field, op: Operation, variables: dict[str, Any],
           path: list[str]) -> dict[str, Any]:
    args = _args(f, op, variables, {"filter": ("String", "String!"), "first": ("Int", "Int!"),
                                    "after": ("String", "String!")})
    predicate = _filter(args.get("filter"), node, path)
    first = args.get("first")
    if first is None:
        first = DEFAULT_PAGE_SIZE
    if not isinstance(first, int) or isinstance(first, bool) or not 0 < first <= MAX_PAGE_SIZE:
        raise GraphQLError(f"first must be an integer from 1 to {MAX_PAGE_SIZE}", path=path)
    start = _cursor_offset(args.get("after"), path) if args.get("after") is not None else 0
    found = [r for r in state.records(node.collection) if predicate(r)]
    page = found[start:start + first]
    out: dict[str, Any] = {}
    for sel in f.selections or _need_selection(f):
        if sel.name == "edges":
            out[sel.key] = [_edge(node, r, start + i, sel) for i, r in enumerate(page)]
        elif sel.name == "pageInfo":
            info = {"endCursor": _cursor(start + len(page) - 1) if page else None,
                    "hasNextPage": start + len(page) < len(found),
                    "startCursor": _cursor(start) if page else None,
                    "hasPreviousPage": start > 0}
            out[sel.key] = {s.key: _pick(info, s, "PageInfo") for s in
                            sel.selections or _need_selection(sel)}
        elif sel.name == "totalCount":
            out[sel.key] = len(found)
        else:
            raise GraphQLError(f"Cannot query field '{sel.name}' on type "
                               f"'{node.type_name}Connection'", "GRAPHQL_VALIDATION_FAILED")
    return out


def _pick(values: Mapping[str, Any], sel: Field, type_name: str) -> Any:
    if sel.name not in values:
        raise GraphQLError(f"Cannot query field '{sel.name}' on type '{type_name}'",
                           "GRAPHQL_VALIDATION_FAILED")
    return values[sel.name]


def _edge(node: NodeType, record: Mapping[str, Any], index: int, sel: Field) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in sel.selections or _need_selection(sel):
        if s.name == "node":
            out[s.key] = _node(node, record, s)
        elif s.name == "cursor":
            out[s.key] = _cursor(index)
        else:
            raise GraphQLError(f"Cannot query field '{s.name}' on type '{node.type_name}Edge'",
                               "GRAPHQL_VALIDATION_FAILED")
    return out


def _node(node: NodeType, record: Mapping[str, Any], sel: Field) -> dict[str, Any]:
    out = {}
    for s in sel.selections or _need_selection(sel):
        getter = node.fields.get(s.name)
        if getter is None:
            raise GraphQLError(f"Cannot query field '{s.name}' on type '{node.type_name}'",
                               "GRAPHQL_VALIDATION_FAILED")
        out[s.key] = getter(record)
    return out


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{index}".encode()).decode()


def _cursor_offset(cursor: Any, path: list[str]) -> int:
    try:
        text = base64.urlsafe_b64decode(str(cursor).encode()).decode()
        if not text.startswith("offset:"):
            raise ValueError
        return int(text[7:]) + 1
    except ValueError:
        raise GraphQLError(f"Invalid cursor {cursor!r}", path=path) from None


# --- filters -----------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "_eq": lambda v, x: v == x, "_ne": lambda v, x: v != x,
    "_in": lambda v, x: v in x, "_nin": lambda v, x: v not in x,
    "_gt": lambda v, x: v is not None and v > x, "_gte": lambda v, x: v is not None and v >= x,
    "_lt": lambda v, x: v is not None and v < x, "_lte": lambda v, x: v is not None and v <= x,
}


def _filter(text: Any, node: NodeType, path: list[str]) -> Callable[[Mapping[str, Any]], bool]:
    if text is None or text == "":
        return lambda record: True
    if not isinstance(text, str):
        raise GraphQLError("filter must be a string holding a JSON object", path=path)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphQLError(f"Invalid filter: {exc}", path=path) from None
    return _compile(spec, node, path)


def _compile(spec: Any, node: NodeType, path: list[str]) -> Callable[[Mapping[str, Any]], bool]:
    if not isinstance(spec, dict):
        raise GraphQLError(f"Invalid filter: expected an object, got {json.dumps(spec)}",
                           path=path)
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for key, cond in spec.items():
        if key in ("_and", "_or"):
            if not isinstance(cond, list):
                raise GraphQLError(f"Invalid filter: {key} takes a list", path=path)
            parts = [_compile(c, node, path) for c in cond]
            combine = all if key == "_and" else any
            checks.append(lambda r, p=parts, c=combine: c(f(r) for f in p))
        elif key == "_not":
            inner = _compile(cond, node, path)
            checks.append(lambda r, i=inner: not i(r))
        elif key in node.fields:
            checks.append(_field_check(node.fields[key], key, cond, path))
        else:
            raise GraphQLError(f"Invalid filter: unknown property '{key}' on "
                               f"'{node.type_name}'", path=path)
    return lambda record: all(c(record) for c in checks)


def _field_check(getter: Callable[[Mapping[str, Any]], Any], key: str, cond: Any,
                 path: list[str]) -> Callable[[Mapping[str, Any]], bool]:
    if not isinstance(cond, dict):
        return lambda r: getter(r) == cond
    tests = []
    for operator, operand in cond.items():
        test = _OPERATORS.get(operator)
        if test is None:
            raise GraphQLError(f"Invalid filter: unknown operator '{operator}' on '{key}'",
                               path=path)
        if operator in ("_in", "_nin") and not isinstance(operand, list):
            raise GraphQLError(f"Invalid filter: {operator} on '{key}' takes a list", path=path)
        tests.append((test, operand))
    return lambda r: all(t(getter(r), x) for t, x in tests)


# --- create ------------------------------------------------------------------------------------


def _create(state: Any, node: NodeType, f: Field, op: Operation, variables: dict[str, Any],
            path: list[str]) -> dict[str, Any]:
    """Type-check the input, map it to the api1 body, and create it under api1's rules."""
    input_type = f"{node.type_name}_Input"
    args = _args(f, op, variables, {"data": (f"{input_type}!", input_type)})
    data = args.get("data")
    if not isinstance(data, dict):
        raise GraphQLError(f"data: expected a {input_type} object", path=path)
    if node.create == "supplier":
        type_problems, body = gin.supplier_problems(data), gin.supplier_body(data)
        check, create = state.supplier_problems, state.create_supplier
    else:
        type_problems, body = gin.invoice_problems(data), gin.invoice_body(data)
        check, create = state.invoice_problems, state.create_invoice
    # As a GraphQL server does, a type error is answered before any rule runs; a refused input
    # is answered before the slow commit (create checks again, under the state lock).
    errors = type_problems or check(body, gin.GRAPHQL_NAMES)
    if errors:
        raise GraphQLError(errors, path=path)
    state.faults.wait_before_commit()
    try:
        record = create(body, gin.GRAPHQL_NAMES)
    except ValidationFailed as exc:
        raise GraphQLError(exc.messages, path=path) from None
    selection = Field("create", selections=f.selections or _need_selection(f))
    return _node(node, record, selection)
