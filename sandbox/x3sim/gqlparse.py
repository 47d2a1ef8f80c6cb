"""A tiny GraphQL parser for the simulator: one operation, variables, fields with arguments,
aliases and nested selections. No fragments or directives: the contract's operations do not use
them, and a client that sends them should notice it strayed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""(?P<skip>[\s,]+|\#[^\n]*)
      | (?P<punct>[{}()\[\]:!$=])
      | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)""",
    re.VERBOSE,
)


class GraphQLSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class VarDef:
    name: str
    type: str  # as written, e.g. "String", "Supplier_Input!", "[String!]"


@dataclass
class Field:
    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Field] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Operation:
    kind: str  # "query" or "mutation"
    variables: dict[str, VarDef]
    selections: list[Field]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise GraphQLSyntaxError(f"unexpected character {text[pos]!r} at {pos}")
        pos = match.end()
        if match.lastgroup != "skip":
            out.append((match.lastgroup or "", match.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value) or (
                kind is not None and tok[0] != kind):
            want = value or kind
            raise GraphQLSyntaxError(f"expected {want}, found {tok[1] if tok else 'end'}")
        self.i += 1
        return tok[1]

    def at(self, value: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1] == value and tok[0] == "punct"

    def document(self) -> Operation:
        kind = "query"
        variables: dict[str, VarDef] = {}
        tok = self.peek()
        if tok and tok[0] == "name":
            kind = self.take(kind="name")
            if kind not in ("query", "mutation"):
                raise GraphQLSyntaxError(f"unsupported operation {kind!r}")
            if self.peek() and self.peek()[0] == "name":  # type: ignore[index]
                self.take(kind="name")  # operation name: ignored
            if self.at("("):
                variables = self.variable_defs()
        selections = self.selection_set()
        if self.peek() is not None:
            raise GraphQLSyntaxError("only one operation per request is supported")
        return Operation(kind, variables, selections)

    def variable_defs(self) -> dict[str, VarDef]:
        self.take("(")
        defs: dict[str, VarDef] = {}
        while not self.at(")"):
            self.take("$")
            name = self.take(kind="name")
            self.take(":")
            defs[name] = VarDef(name, self.type_ref())
            if self.at("="):
                raise GraphQLSyntaxError("variable defaults are not supported")
        self.take(")")
        return defs

    def type_ref(self) -> str:
        if self.at("["):
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.take(kind="name")
        if self.at("!"):
            self.take("!")
            text += "!"
        return text

    def selection_set(self) -> list[Field]:
        self.take("{")
        fields = []
        while not self.at("}"):
            fields.append(self.field())
        self.take("}")
        if not fields:
            raise GraphQLSyntaxError("empty selection set")
        return fields

    def field(self) -> Field:
        name, alias = self.take(kind="name"), None
        if self.at(":"):
            self.take(":")
            alias, name = name, self.take(kind="name")
        result = Field(name, alias)
        if self.at("("):
            self.take("(")
            while not self.at(")"):
                arg = self.take(kind="name")
                self.take(":")
                result.args[arg] = self.value()
            self.take(")")
        if self.at("{"):
            result.selections = self.selection_set()
        return result

    def value(self) -> Any:
        kind, text = self.peek() or ("", "")
        if self.at("$"):
            self.take("$")
            return Var(self.take(kind="name"))
        if self.at("["):
            self.take("[")
            items = []
            while not self.at("]"):
                items.append(self.value())
            self.take("]")
            return items
        if self.at("{"):
            self.take("{")
            obj = {}
            while not self.at("}"):
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        self.i += 1
        if kind == "string":
            return json.loads(text)
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        raise GraphQLSyntaxError(f"unexpected {text or 'end'} where a value belongs")


def parse(text: str) -> Operation:
    """The one operation in `text`; GraphQLSyntaxError says what is wrong."""
    return _Parser(text).document()


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """An argument value with its $variables replaced by what the request carried."""
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value
