# -*- coding: utf-8 -*-
# SQLite → PostgreSQL, without a database: how a SQLite value becomes the value of a
# PostgreSQL column (strictly: what cannot be converted without loss is an error, never a
# guess), the canonical text both sides are hashed in, the order tables load in, and
# what a load of a target with rows in it means. library/sqlite_to_postgresql.py does the
# I/O; tests/unit/test_sqlite_pg.py the cases.

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import struct
import uuid

UTC = datetime.timezone.utc
MOD = 2 ** 256

TEXT = ("text", "character varying", "character", "citext", "name")
INTEGER = ("smallint", "integer", "bigint")
TIMESTAMPTZ = "timestamp with time zone"
TIMESTAMP = "timestamp without time zone"
SUPPORTED = TEXT + INTEGER + ("boolean", "numeric", "double precision", "real", TIMESTAMPTZ, TIMESTAMP,
                              "date", "bytea", "json", "jsonb", "uuid")
TRUE = {"1", "t", "true", "y", "yes", "on"}
FALSE = {"0", "f", "false", "n", "no", "off"}


class ConversionError(ValueError):
    """A SQLite value that has no lossless PostgreSQL value for its column."""


def _timestamp(value, aware):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # SQLite's unixepoch() form.
        parsed = datetime.datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError as exc:
            raise ConversionError("not an ISO 8601 timestamp: %r" % value) from exc
    else:
        raise ConversionError("not a timestamp: %r" % (value,))
    if aware:
        # SQLite's CURRENT_TIMESTAMP and datetime('now') are UTC without an offset.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _integer(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise ConversionError("not an integer: %r" % (value,))


def _boolean(value):
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ConversionError("not a boolean (0/1, true/false): %r" % (value,))


def convert(value, pg_type):
    """The Python value psycopg writes into a column of pg_type (information_schema's
    data_type) for a value SQLite returned; None stays None."""
    if value is None:
        return None
    if pg_type in TEXT:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConversionError("bytes that are not UTF-8 in a text column") from exc
        text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
        if "\x00" in text:
            raise ConversionError("a NUL character, which PostgreSQL text cannot hold")
        return text
    if pg_type in INTEGER:
        return _integer(value)
    if pg_type == "boolean":
        return _boolean(value)
    if pg_type == "numeric":
        try:
            return decimal.Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except decimal.InvalidOperation as exc:
            raise ConversionError("not a number: %r" % (value,)) from exc
    if pg_type in ("double precision", "real"):
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConversionError("not a number: %r" % (value,)) from exc
    if pg_type in (TIMESTAMPTZ, TIMESTAMP):
        return _timestamp(value, pg_type == TIMESTAMPTZ)
    if pg_type == "date":
        try:
            return datetime.date.fromisoformat(str(value).strip()[:10])
        except ValueError as exc:
            raise ConversionError("not a date: %r" % (value,)) from exc
    if pg_type == "bytea":
        return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode("utf-8")
    if pg_type in ("json", "jsonb"):
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        try:
            json.loads(text)
        except ValueError as exc:
            raise ConversionError("not JSON: %r" % text[:80]) from exc
        return text
    if pg_type == "uuid":
        try:
            return uuid.UUID(value.hex() if isinstance(value, bytes) else str(value))
        except ValueError as exc:
            raise ConversionError("not a UUID: %r" % (value,)) from exc
    raise ConversionError("column type %s is not supported" % pg_type)


def canonical(value, pg_type):
    """One text for one value, the same for what was sent and what PostgreSQL returns."""
    if value is None:
        return "\\N"
    if pg_type == "boolean":
        return "t" if value else "f"
    if pg_type == "real":
        return repr(struct.unpack("f", struct.pack("f", float(value)))[0])
    if pg_type == "double precision":
        return repr(float(value))
    if pg_type == "numeric":
        return str(decimal.Decimal(value).normalize())
    if pg_type == TIMESTAMPTZ:
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if pg_type == TIMESTAMP:
        return value.isoformat(timespec="microseconds")
    if pg_type == "bytea":
        return bytes(value).hex()
    if pg_type in ("json", "jsonb"):
        parsed = json.loads(value) if isinstance(value, (str, bytes)) else value
        return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def row_text(values, types):
    # Tab and backslash escaped as in COPY's text format: no two rows share a text.
    return "\t".join(canonical(v, t).replace("\\", "\\\\").replace("\t", "\\t") if v is not None else "\\N"
                     for v, t in zip(values, types, strict=True))


class Checksum:
    """Row count and a hash of a table's rows independent of their order (the sum of each
    row's SHA-256 modulo 2^256): SQLite and PostgreSQL order text differently, and an
    ORDER BY over millions of rows costs more than the hash."""

    def __init__(self):
        self.rows = 0
        self.total = 0

    def add(self, values, types):
        self.rows += 1
        self.total = (self.total + int.from_bytes(hashlib.sha256(row_text(values, types).encode("utf-8")).digest(),
                                                  "big")) % MOD

    @property
    def hexdigest(self):
        return "%064x" % self.total


def load_order(tables, references):
    """Tables ordered so that a table comes after those its foreign keys reference
    (references: table → set of tables); a cycle keeps the given order for its members."""
    ordered, seen = [], set()

    def visit(name, path):
        if name in seen or name in path:
            return
        for parent in sorted(references.get(name, ())):
            if parent in tables and parent != name:
                visit(parent, path | {name})
        seen.add(name)
        ordered.append(name)

    for name in tables:
        visit(name, frozenset())
    return ordered


def plan(source_tables, target_tables, exclude=()):
    """(tables to load, problems): every SQLite table (but the excluded and SQLite's or
    Litestream's own) needs a PostgreSQL table of the same name with every column of it."""
    problems, tables = [], []
    for name, columns in source_tables.items():
        if name in exclude or name.startswith(("sqlite_", "_litestream")):
            continue
        target = target_tables.get(name)
        if target is None:
            problems.append("table %s has no PostgreSQL counterpart (the app's PostgreSQL migrations must create "
                            "it; or exclude it)" % name)
            continue
        missing = [c for c in columns if c not in target]
        if missing:
            problems.append("table %s: column(s) %s missing in PostgreSQL" % (name, ", ".join(missing)))
            continue
        unsupported = ["%s (%s)" % (c, target[c]) for c in columns if target[c] not in SUPPORTED]
        if unsupported:
            problems.append("table %s: column type(s) the loader does not convert: %s" % (name, ", ".join(unsupported)))
            continue
        tables.append(name)
    return tables, problems


def decide(source, target, replace):
    """What a run does given the per-table {rows, checksum} of both sides (target only for
    the tables to load): 'load' into empty tables, 'done' when the target already holds
    exactly the source, 'replace' when allowed, else 'refuse'."""
    if all(t["rows"] == 0 for t in target.values()):
        return "load"
    if all(source.get(name) == t for name, t in target.items()) and set(source) == set(target):
        return "done"
    return "replace" if replace else "refuse"
