"""SQLite → PostgreSQL conversion and checksums (module_utils/hastack_sqlite_pg.py), and the
module's read of a real SQLite file; the load against PostgreSQL is in molecule/migrate."""

import datetime
import decimal
import sqlite3

import pytest

from library import sqlite_to_postgresql as module
from module_utils import hastack_sqlite_pg as m

UTC = datetime.timezone.utc


@pytest.mark.parametrize("value, pg_type, expected", [
    (None, "boolean", None),
    (1, "boolean", True), (0, "boolean", False), ("true", "boolean", True), ("F", "boolean", False),
    ("2026-11-28T09:00:00.123Z", m.TIMESTAMPTZ, datetime.datetime(2026, 11, 28, 9, 0, 0, 123000, UTC)),
    # SQLite's CURRENT_TIMESTAMP: UTC without an offset.
    ("2026-01-02 03:04:05", m.TIMESTAMPTZ, datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02T03:04:05+01:00", m.TIMESTAMP, datetime.datetime(2026, 1, 2, 2, 4, 5)),
    (0, m.TIMESTAMPTZ, datetime.datetime(1970, 1, 1, tzinfo=UTC)),
    ("2026-03-04", "date", datetime.date(2026, 3, 4)),
    (12.5, "numeric", decimal.Decimal("12.5")), ("0.10", "numeric", decimal.Decimal("0.10")),
    (3.0, "bigint", 3), ("42", "integer", 42), (7, "text", "7"), (b"caf\xc3\xa9", "text", "café"),
    ("旋盤 🛠", "text", "旋盤 🛠"), (b"\x00\xff", "bytea", b"\x00\xff"), ("ab", "bytea", b"ab"),
    ('{"b": 1}', "jsonb", '{"b": 1}'), (2, "double precision", 2.0),
])
def test_values_convert_to_their_column_type(value, pg_type, expected):
    assert m.convert(value, pg_type) == expected


@pytest.mark.parametrize("value, pg_type", [
    (2, "boolean"), ("maybe", "boolean"), ("yesterday", m.TIMESTAMPTZ), (1.5, "integer"), ("x", "bigint"),
    ("a\x00b", "text"), (b"\xff", "text"), ("nan?", "numeric"), ("{", "json"), ("x", "uuid"),
    ("x", "interval"),
])
def test_lossy_or_unknown_values_are_refused(value, pg_type):
    with pytest.raises(m.ConversionError):
        m.convert(value, pg_type)


def test_canonical_text_is_the_same_for_sent_and_returned_values():
    sent = m.convert("2026-11-28T10:00:00+01:00", m.TIMESTAMPTZ)
    returned = datetime.datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # what PostgreSQL gives back
    assert m.canonical(sent, m.TIMESTAMPTZ) == m.canonical(returned, m.TIMESTAMPTZ)
    assert m.canonical(decimal.Decimal("12.5"), "numeric") == m.canonical(decimal.Decimal("12.50"), "numeric")
    assert m.canonical(1.1, "real") == m.canonical(float("1.1"), "real")
    assert m.canonical('{"b":1, "a":2}', "jsonb") == m.canonical({"a": 2, "b": 1}, "jsonb")
    assert m.canonical(memoryview(b"\x01"), "bytea") == m.canonical(b"\x01", "bytea") == "01"


def test_checksums_ignore_order_but_see_every_difference():
    kinds = ["bigint", "text", "boolean"]
    rows = [[1, "a", True], [2, None, False], [3, "tab\there", None]]

    def digest(items):
        check = m.Checksum()
        for row in items:
            check.add(row, kinds)
        return check.rows, check.hexdigest

    assert digest(rows) == digest(list(reversed(rows)))
    assert digest(rows) != digest(rows[:2])
    assert digest(rows) != digest(rows + [rows[0]])  # a duplicated row counts
    assert digest([[2, None, False]]) != digest([[2, "\\N", False]])  # NULL is not the text \N
    # A tab inside a value cannot pass for a column boundary.
    assert digest([[1, "a\tt", None]]) != digest([[1, "a", True]])


def test_tables_load_after_those_they_reference():
    order = m.load_order(["bookings", "usage_entries", "machines"], {"bookings": {"machines"}, "machines": set()})
    assert order.index("machines") < order.index("bookings") and len(order) == 3
    # A cycle does not loop forever; the foreign keys are created after the data anyway.
    assert sorted(m.load_order(["a", "b"], {"a": {"b"}, "b": {"a"}})) == ["a", "b"]


def test_plan_names_what_does_not_fit():
    source = {"t": ["id", "x"], "u": ["id"], "sqlite_sequence": ["name", "seq"], "schema_migrations": ["name"],
              "v": ["id"], "w": ["id"]}
    target = {"t": {"id": "bigint", "x": "text"}, "u": {"id": "bigint", "extra": "text"}, "w": {"id": "interval"}}
    tables, problems = m.plan(source, target, exclude={"schema_migrations"})
    assert tables == ["t", "u"]
    assert any("table v has no PostgreSQL counterpart" in p for p in problems)
    assert any("w: column type(s) the loader does not convert: id (interval)" in p for p in problems)
    _, problems = m.plan({"t": ["id", "gone"]}, {"t": {"id": "bigint"}})
    assert problems == ["table t: column(s) gone missing in PostgreSQL"]


@pytest.mark.parametrize("target, replace, action", [
    ({"t": {"rows": 0}}, False, "load"),
    ({"t": {"rows": 2, "checksum": "c"}}, False, "done"),
    ({"t": {"rows": 1, "checksum": "x"}}, False, "refuse"),
    ({"t": {"rows": 1, "checksum": "x"}}, True, "replace"),
])
def test_what_a_run_does_with_the_target(target, replace, action):
    assert m.decide({"t": {"rows": 2, "checksum": "c"}}, target, replace) == action


def test_the_module_reads_tables_references_and_autoincrement_counters(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE machines (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE bookings (id INTEGER PRIMARY KEY AUTOINCREMENT, machine_id INTEGER REFERENCES machines(id),
                               paid INTEGER);
        INSERT INTO machines VALUES (1, 'lathe');
        INSERT INTO bookings (machine_id, paid) VALUES (1, 1), (1, 2);
        DELETE FROM bookings WHERE id = 2;
    """)
    conn.close()
    source, tables, references, counters = module.read_source(str(path))
    assert tables["bookings"] == ["id", "machine_id", "paid"] and references["bookings"] == {"machines"}
    assert counters == {"bookings": 2}
    # A value that does not convert names its table, row and column.
    with pytest.raises(module.LoadError, match=r"table bookings, row id=1, machine_id=1, column paid"):
        sqlite3.connect(path).execute("UPDATE bookings SET paid = 5").connection.commit()
        source, *_ = module.read_source(str(path))
        list(module.source_rows(source, "bookings", ["id", "machine_id", "paid"], ["bigint", "bigint", "boolean"]))
