"""SData `where` predicates as the X3 simulator understands them.

Grammar (keywords are case-insensitive, property names are not)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*          # "and" binds tighter than "or"
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := operand op operand
    op         := eq | ne | gt | ge | lt | le | = | <> | != | > | >= | < | <=
    operand    := PROPERTY | 'string' ('' is a quote) | @YYYY-MM-DD@ | number
                | true | false | null

A record value is coerced to the type of the literal it is compared with, because X3 answers
decimals as strings ("800.00") and dates as "YYYY-MM-DD": `AMTATI gt 100` and
`BPRDAT ge @2026-11-01@` must still compare numerically and chronologically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "Predicate",
    "UnknownPropertyError",
    "WhereError",
    "WhereSyntaxError",
    "compile_where",
    "parse_where",
]


class WhereError(ValueError):
    """Base class: the predicate cannot be used."""


class WhereSyntaxError(WhereError):
    """The text is not a valid predicate (the simulator answers 400)."""


class UnknownPropertyError(WhereError):
    """The predicate names a property the class does not have (X3 answers 500)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown property '{name}'")
        self.name = name


_OPERATORS = {
    "eq": "eq", "=": "eq",
    "ne": "ne", "<>": "ne", "!=": "ne",
    "gt": "gt", ">": "gt",
    "ge": "ge", ">=": "ge",
    "lt": "lt", "<": "lt",
    "le": "le", "<=": "le",
}  # fmt: skip
_KEYWORDS = {"and", "or", "not", "true", "false", "null"}

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<paren>[()])
  | (?P<string>'(?:[^']|'')*')
  | (?P<date>@[^@]*@)
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
  | (?P<symbol><>|!=|>=|<=|=|<|>)
  | (?P<word>[A-Za-z_$][A-Za-z0-9_$.]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # paren, string, date, number, op, keyword, property, end
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise WhereSyntaxError(f"Unterminated string at position {pos}")
            raise WhereSyntaxError(f"Unexpected character {text[pos]!r} at position {pos}")
        kind, raw = match.lastgroup, match.group()
        if kind != "space":
            tokens.append(_make_token(kind, raw, pos))
        pos = match.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


def _make_token(kind: str | None, raw: str, pos: int) -> _Token:
    if kind == "string":
        return _Token("string", raw[1:-1].replace("''", "'"), pos)
    if kind == "date":
        try:
            return _Token("date", date.fromisoformat(raw[1:-1]), pos)
        except ValueError:
            raise WhereSyntaxError(f"Invalid date {raw} at position {pos}") from None
    if kind == "number":
        return _Token("number", Decimal(raw), pos)
    if kind == "symbol":
        return _Token("op", _OPERATORS[raw], pos)
    if kind == "paren":
        return _Token("paren", raw, pos)
    lowered = raw.lower()
    if lowered in _OPERATORS:
        return _Token("op", _OPERATORS[lowered], pos)
    if lowered in _KEYWORDS:
        return _Token("keyword", lowered, pos)
    return _Token("property", raw, pos)


# --- syntax tree ---------------------------------------------------------------------------------


class Predicate:
    """A parsed predicate: call `matches(record)`; `properties()` lists the names it uses."""

    def matches(self, record: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def properties(self) -> Iterator[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Property:
    name: str


@dataclass(frozen=True)
class _Literal:
    value: Any


_Operand = _Property | _Literal


@dataclass(frozen=True)
class _Comparison(Predicate):
    op: str
    left: _Operand
    right: _Operand

    def matches(self, record: Mapping[str, Any]) -> bool:
        left, right = _resolve(self.left, record), _resolve(self.right, record)
        # The literal's type decides how the record's value is read.
        if isinstance(self.right, _Literal):
            left = _coerce(left, right)
        elif isinstance(self.left, _Literal):
            right = _coerce(right, left)
        return _compare(self.op, left, right)

    def properties(self) -> Iterator[str]:
        for side in (self.left, self.right):
            if isinstance(side, _Property):
                yield side.name


@dataclass(frozen=True)
class _And(Predicate):
    items: tuple[Predicate, ...]

    def matches(self, record: Mapping[str, Any]) -> bool:
        return all(item.matches(record) for item in self.items)

    def properties(self) -> Iterator[str]:
        for item in self.items:
            yield from item.properties()


@dataclass(frozen=True)
class _Or(Predicate):
    items: tuple[Predicate, ...]

    def matches(self, record: Mapping[str, Any]) -> bool:
        return any(item.matches(record) for item in self.items)

    def properties(self) -> Iterator[str]:
        for item in self.items:
            yield from item.properties()


@dataclass(frozen=True)
class _Not(Predicate):
    item: Predicate

    def matches(self, record: Mapping[str, Any]) -> bool:
        return not self.item.matches(record)

    def properties(self) -> Iterator[str]:
        return self.item.properties()


def _resolve(operand: _Operand, record: Mapping[str, Any]) -> Any:
    if isinstance(operand, _Property):
        return record.get(operand.name)
    return operand.value


def _coerce(value: Any, like: Any) -> Any:
    """Read a record value as the literal's type; None when it cannot be read that way."""
    if value is None or like is None:
        return value
    try:
        if isinstance(like, bool):
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if isinstance(like, Decimal):
            return Decimal(str(value))
        if isinstance(like, date):
            return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    except (InvalidOperation, ValueError):
        return None
    return str(value) if isinstance(like, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        # null only equals null (or an empty X3 field); ordering against null is never true.
        both_empty = left in (None, "") and right in (None, "")
        return {"eq": both_empty, "ne": not both_empty}.get(op, False)
    try:
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
        if op == "gt":
            return left > right
        if op == "ge":
            return left >= right
        if op == "lt":
            return left < right
        return left <= right
    except TypeError:  # e.g. a date property compared with a number
        return False


# --- parser --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def parse(self) -> Predicate:
        if self.peek().kind == "end":
            raise WhereSyntaxError("Empty predicate")
        result = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise WhereSyntaxError(f"Unexpected {token.value!r} at position {token.pos}")
        return result

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept_keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "keyword" and token.value == word:
            self.index += 1
            return True
        return False

    def or_expr(self) -> Predicate:
        items = [self.and_expr()]
        while self.accept_keyword("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else _Or(tuple(items))

    def and_expr(self) -> Predicate:
        items = [self.not_expr()]
        while self.accept_keyword("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else _And(tuple(items))

    def not_expr(self) -> Predicate:
        if self.accept_keyword("not"):
            return _Not(self.not_expr())
        token = self.peek()
        if token.kind == "paren" and token.value == "(":
            self.advance()
            inner = self.or_expr()
            closing = self.advance()
            if closing.kind != "paren" or closing.value != ")":
                raise WhereSyntaxError(f"Expected ')' at position {closing.pos}")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        left = self.operand()
        token = self.advance()
        if token.kind != "op":
            shown = "end of predicate" if token.kind == "end" else repr(token.value)
            raise WhereSyntaxError(f"Expected an operator at position {token.pos}, got {shown}")
        return _Comparison(token.value, left, self.operand())

    def operand(self) -> _Operand:
        token = self.advance()
        if token.kind == "property":
            return _Property(token.value)
        if token.kind in ("string", "date", "number"):
            return _Literal(token.value)
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            return _Literal({"true": True, "false": False, "null": None}[token.value])
        shown = "end of predicate" if token.kind == "end" else repr(token.value)
        raise WhereSyntaxError(
            f"Expected a property or a value at position {token.pos}, got {shown}"
        )


def parse_where(text: str) -> Predicate:
    """Parse an SData predicate; raises WhereSyntaxError."""
    return _Parser(text).parse()


def compile_where(
    text: str | None, properties: Collection[str]
) -> Callable[[Mapping[str, Any]], bool]:
    """A record filter for `text` (None or blank: every record).

    Raises WhereSyntaxError, or UnknownPropertyError for a name outside `properties`: checked
    up front so an empty collection still reports the mistake, as X3 does.
    """
    if text is None or not text.strip():
        return lambda record: True
    predicate = parse_where(text)
    for name in predicate.properties():
        if name not in properties:
            raise UnknownPropertyError(name)
    return predicate.matches
