"""Load rows as `Schema.load` would, minus its per-call overhead, for the rows that are valid.

A file can hold hundreds of thousands of rows, and `Schema.load` costs tens of microseconds per
row: far more than reading the CSV. The marshmallow schema stays the definition of a row: this
module compiles a plan from the schema's own field objects (their converters, validators,
defaults) into one straight-line function, and any row it cannot vouch for raises `NeedsSchema`,
upon which the caller runs `Schema.load` for the authoritative result or error message. A
property test checks that both agree (tests/unit/test_parse_properties.py).

Input is the `values` of a `Record` (rows.py): stripped strings in the order of `field_names`,
"" for no value; `as_marshmallow_input` is the same row as `Schema.load` must see it. Output is
the dict `Schema.load` would give, under the `rename`d keys. For the line fields of the invoice
parser, `load_records` is generated as (`print(loader.source)` shows it all)::

    def load_records(records, prefix, NeedsSchema=NeedsSchema, ..., k0=k0, m0=m0, ...):
        loaded = []
        append = loaded.append
        n = len(prefix)
        try:
            for _, values, error in records:       # Record(line, values, error)
                if error is not None or values[:n] != prefix:
                    raise NeedsSchema               # the header text differs: Schema.load
                v0 = values[15]                     # line_number: "1"
                if not v0:
                    raise NeedsSchema               # required and missing: Schema.load words it
                else:
                    r = k0(v0)                      # converted before? (a cache)
                    v0 = m0(v0) if r is None else r     # 1
                ...
                v3 = values[18]                     # line_amount: "800.00"
                if not v3:
                    raise NeedsSchema
                else:
                    if p3(v3):                      # the common shape: digits, one "."
                        v3 = Decimal(v3.replace(',', ''))   # Decimal("800.00")
                        if not v3: v3 = v3.copy_abs()
                    else:
                        v3 = c3(v3)                 # the field's own converter
                ...
                out = {'line_number': v0, 'description': v1, 'quantity': v2, 'amount': v3,
                       'gl_account': v4, 'cost_center': v5, 'location': v6}
                append(out)
        except ValidationError:
            raise NeedsSchema from None
        return loaded
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

from marshmallow import Schema, ValidationError, fields, missing, validate

from pipeline.stampli.rows import Record
from pipeline.stampli.schema import AsciiInt, CleanText, DecimalAmount, LayoutDate

_CACHE_LIMIT = 4096  # distinct values kept per field: dates, statuses, line numbers repeat


class NeedsSchema(Exception):
    """This row needs the full `Schema.load` (it may be invalid, or out of the fast path)."""


def as_marshmallow_input(field_names: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """The record as `Schema.load` must see it: no value is a missing key, not ""."""
    return {k: v for k, v in zip(field_names, values, strict=True) if v != ""}


class _Planned(NamedTuple):
    """One field the generated code loads: its name, where the record's values hold it, and
    the schema's field object (converter, validators, default)."""

    name: str
    position: int
    field: fields.Field


class FastLoader:
    """Loads the fields `names` of records laid out as `field_names`, under the keys `rename`
    gives them (to build output records directly), or raises `NeedsSchema`:

    - `load(values)`: one record's values;
    - `load_records(records, prefix)`: every `(line, values, error)` record, provided none has
      a reader error and all their values start with `prefix` (the loop runs inside the
      generated code: no call per record).
    """

    def __init__(self, schema: Schema, field_names: Sequence[str],
                 names: Iterable[str] | None = None,
                 rename: Mapping[str, str] | None = None) -> None:
        wanted = list(field_names) if names is None else list(names)
        self.load: Callable[[Sequence[str]], dict[str, Any]] = _always_slow
        self.load_records: Callable[[Iterable[Record], tuple[str, ...]], list[dict[str, Any]]]
        self.load_records = _always_slow_records
        self.source = ""  # the generated code, for reading
        if not _plain_schema(schema):
            return
        chosen = [schema.fields[n] for n in wanted]
        if any(f.data_key or f.attribute or f.pre_load or f.post_load for f in chosen):
            return  # fields reading other keys or post-processing: leave them to marshmallow
        plan = [_Planned(n, list(field_names).index(n), f)
                for n, f in zip(wanted, chosen, strict=True)]
        self.load, self.load_records, self.source = _compile(plan, rename or {})


def _always_slow(values: Sequence[str]) -> dict[str, Any]:
    raise NeedsSchema


def _always_slow_records(records: Iterable[Record], prefix: tuple[str, ...]
                         ) -> list[dict[str, Any]]:
    raise NeedsSchema


def _plain_schema(schema: Schema) -> bool:
    """Schema-level hooks (pre/post_load, validates_schema...) would be skipped: opt out."""
    hooks = getattr(schema, "_hooks", None)
    return isinstance(hooks, dict) and not any(hooks.values())


def _compile(plan: list[_Planned], rename: Mapping[str, str]) -> Any:
    """Generate `load` and `load_records` with one unrolled block per field: no loop over
    fields, no closure per value, validators inlined, one try for the conversions; what they
    use is bound as default arguments (local lookups). Several times faster than interpreting
    the same plan, which matters at a few hundred thousand rows."""
    env: dict[str, Any] = {"NeedsSchema": NeedsSchema, "ValidationError": ValidationError,
                           "missing": missing}
    block, result, optional_missing = [], [], []
    # The cleaned text fields (keys, names) are checked together first: when all are printable
    # ASCII, as nearly always, one join and two C calls vouch for all of them.
    cleaned = [position for _, position, f in plan if isinstance(f, CleanText)]
    if len(cleaned) > 1:
        block.append(f"clean = ''.join([{', '.join(f'values[{p}]' for p in cleaned)}])")
        block.append("clean = clean.isascii() and clean.isprintable()")
    for i, (name, position, f) in enumerate(plan):
        v = f"v{i}"
        block.append(f"{v} = values[{position}]")
        block.append(f"if not {v}:")
        if f.required:
            block.append("    raise NeedsSchema")
        else:
            env[f"d{i}"] = f.load_default
            default = f"d{i}()" if callable(f.load_default) else f"d{i}"
            block.append(f"    {v} = {default}")
            if f.load_default is missing:
                optional_missing.append(rename.get(name, name))
        steps = _steps(f, v, str(i), env, together=len(cleaned) > 1)
        if steps:
            block.append("else:")
            block.extend(f"    {line}" for line in steps)
        result.append(f"{rename.get(name, name)!r}: {v}")
    block.append(f"out = {{{', '.join(result)}}}")
    for name in optional_missing:  # marshmallow leaves such keys out
        block.append(f"if out[{name!r}] is missing: del out[{name!r}]")

    # Positional defaults, not keyword-only ones: a call fills those from a tuple, these by a
    # dict lookup each (~0.2 us a call with some 30 of them, twice per invoice).
    bound = ", ".join(f"{name}={name}" for name in env)
    one = [f"def load(values, {bound}):", "    try:",
           *(f"        {line}" for line in block),
           "    except ValidationError:", "        raise NeedsSchema from None", "    return out"]
    many = [f"def load_records(records, prefix, {bound}):",
            "    loaded = []", "    append = loaded.append", "    n = len(prefix)", "    try:",
            "        for _, values, error in records:",
            "            if error is not None or values[:n] != prefix:",
            "                raise NeedsSchema",
            *(f"            {line}" for line in block),
            "            append(out)",
            "    except ValidationError:", "        raise NeedsSchema from None",
            "    return loaded"]
    source = "\n".join(one + many)
    exec(source, env)  # noqa: S102 - source built above from field names only
    return env["load"], env["load_records"], source


def _steps(f: fields.Field, v: str, i: str, env: dict[str, Any], together: bool = False
           ) -> list[str]:
    """Code turning the text in `v` into the field's value, or raising ValidationError."""
    if type(f) is fields.String:  # the text itself, then the validators
        return _checks(f.validators, v, i, env)
    if isinstance(f, CleanText):  # printable ASCII as is; else the field's cleaning
        env[f"n{i}"] = f.clean
        check = f"not ({v}.isascii() and {v}.isprintable())"
        return [f"if {'not clean and ' if together else ''}{check}: {v} = n{i}({v})",
                *_checks(f.validators, v, i, env)]
    if isinstance(f, LayoutDate | fields.Integer | AsciiInt) or f.metadata.get("repeats"):
        # Deterministic in the value and repeated across rows (dates, line numbers, fields the
        # schema marks as repeating): remember results; deserialize runs marshmallow's own
        # conversion and validators on a miss.
        cache: dict[str, Any] = {}
        env[f"k{i}"], env[f"m{i}"] = cache.get, _remember(cache, f.deserialize)
        return [f"r = k{i}({v})", f"{v} = m{i}({v}) if r is None else r"]
    if isinstance(f, DecimalAmount):
        # Not cached: amounts are mostly distinct. The common shapes are inlined (the field says
        # which text is `Decimal(text without thousands separators)`); the rest goes through
        # the field's converter.
        env[f"c{i}"], env["Decimal"] = f.converter(), Decimal
        convert = [f"{v} = c{i}({v})"]
        common = f.common_shape()
        if common is not None:
            env[f"p{i}"], thousands = common
            text = f"{v}.replace({thousands!r}, '')" if thousands else v
            convert = [f"if p{i}({v}):", f"    {v} = Decimal({text})",
                       f"    if not {v}: {v} = {v}.copy_abs()", "else:", f"    {v} = c{i}({v})"]
        return [*convert, *_checks(f.validators, v, i, env)]
    env[f"c{i}"] = f.deserialize
    return [f"{v} = c{i}({v})"]


def _remember(cache: dict[str, Any], convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def miss(value: str) -> Any:
        out = convert(value)  # a ValidationError is not cached: the slow path reports it
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[value] = out
        return out
    return miss


def _checks(validators: list[Any], v: str, i: str, env: dict[str, Any]) -> list[str]:
    """Pass/fail code with each validator's semantics; the messages come from marshmallow."""
    code = []
    for j, check in enumerate(validators):
        if type(check) is validate.Length:
            lo, hi, eq = check.min, check.max, check.equal
            if eq is not None:
                code.append(f"if len({v}) != {eq}: raise ValidationError('')")
                continue
            if lo is not None and lo > 1:  # values reaching here are never empty
                code.append(f"if len({v}) < {lo}: raise ValidationError('')")
            if hi is not None:
                code.append(f"if len({v}) > {hi}: raise ValidationError('')")
        elif type(check) is validate.Regexp:
            env[f"x{i}_{j}"] = check.regex.match
            code.append(f"if x{i}_{j}({v}) is None: raise ValidationError('')")
        else:
            env[f"x{i}_{j}"] = partial(_passes, check)
            code.append(f"if not x{i}_{j}({v}): raise ValidationError('')")
    return code


def _passes(v: Callable[[Any], Any], value: Any) -> bool:
    try:
        return v(value) is not False
    except ValidationError:
        return False
