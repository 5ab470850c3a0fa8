#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hastack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sqlite_to_postgresql
short_description: Load a SQLite database into an existing PostgreSQL schema, verified, in one transaction
description:
  - Copies every table of a SQLite file (a consistent copy, not the live file) into the
    tables of the same name that the app's own PostgreSQL migrations created, with COPY,
    converting each value to its column's PostgreSQL type (booleans, timestamps with time
    zone, numeric, bytea, json, uuid). A value with no lossless conversion fails the run
    and names the table, row and column.
  - One transaction. Secondary indexes and foreign keys of the loaded tables are dropped
    before the data and created again after it (FKs validated then), identity and serial
    sequences are set past the highest id (and past SQLite's AUTOINCREMENT counter, so no
    id is reused), then each table's row count and content checksum are computed on both
    sides the same way (module_utils/hastack_sqlite_pg.py: each row's canonical text
    hashed, hashes summed) and compared. Any error or difference rolls everything back:
    a failed load leaves the target as it was.
  - Why this and not pgloader (Debian's 3.6.9) - pgloader creates its own schema unless
    told otherwise, keeps loading when rows fail (they go to a reject file and the run can
    still end successfully, half loaded), commits in batches, and computes no checksum
    that could be compared with SQLite's; its casting rules for SQLite's untyped values are
    guesses made per declared type. Here the target types are the app's own migrations,
    every conversion is strict, and nothing is committed unless both sides match.
  - A target that already holds exactly the source is left alone (C(changed=false)); a
    target with other rows is refused unless O(replace=true), which empties the loaded
    tables first (in the same transaction).
  - Check mode reads both sides, converts every value and reports what a run would do.
attributes:
  check_mode:
    support: full
options:
  sqlite_path:
    description: The SQLite file to read (opened read-only).
    type: path
    required: true
  db_host:
    description: PostgreSQL host, normally the DB VIP.
    type: str
    required: true
  db_port:
    description: PostgreSQL port.
    type: int
    default: 5432
  db_name:
    description: Target database.
    type: str
    required: true
  db_user:
    description: Role that owns the target tables (the app's role).
    type: str
    required: true
  db_password:
    description: Its password.
    type: str
    required: true
  sslmode:
    description: libpq sslmode; C(verify-full) checks the server's certificate and its address.
    type: str
    choices: [disable, prefer, require, verify-ca, verify-full]
    default: prefer
  sslrootcert:
    description: CA certificate the server's certificate is verified against.
    type: path
  db_schema:
    description: Schema of the target tables.
    type: str
    default: public
  exclude_tables:
    description: SQLite tables not to load (the app's migration bookkeeping has its own on each side).
    type: list
    elements: str
    default: [schema_migrations]
  replace:
    description: Empty the target tables first when they hold other rows.
    type: bool
    default: false
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 5
seealso:
  - name: docs/RUNBOOK.md, Move the app from SQLite to PostgreSQL
    description: The playbook that calls this module.
    link: https://github.com/hastack/hastack/blob/main/docs/RUNBOOK.md
author: hastack
"""

EXAMPLES = r"""
- name: Load the consistent copy into PostgreSQL
  sqlite_to_postgresql:
    sqlite_path: /var/lib/hastack-app/migrate/app.db
    db_host: "{{ hastack_db_vip }}"
    db_name: hastack
    db_user: hastack
    db_password: "{{ vault_postgresql_app_password }}"
  no_log: false
  register: migrate_load
"""

RETURN = r"""
action:
  description: C(load) (target was empty), C(replace) (target emptied and loaded), C(done)
    (target already held the source), C(refuse) (check mode only; a real run fails).
  returned: always
  type: str
  sample: load
tables:
  description: Per loaded table, rows and the content checksum on both sides.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "usage_entries", "rows": 2000, "source_checksum": "9f0c...", "target_checksum": "9f0c..."}]
rows:
  description: Rows loaded (or that a run would load).
  returned: always
  type: int
  sample: 2000
source_bytes:
  description: Size of the SQLite file.
  returned: always
  type: int
  sample: 104857600
seconds:
  description: Time from the first COPY to the commit (load, verification included).
  returned: always
  type: float
  sample: 1.8
rows_per_second:
  description: rows / seconds.
  returned: always
  type: float
  sample: 110000.0
sequences:
  description: Sequence to the value it was set to.
  returned: when loaded
  type: dict
  sample: {"public.usage_entries_id_seq": 2000}
"""

import os
import sqlite3
import time
import urllib.parse

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.hastack_module import tls_client_argument_spec
from ansible.module_utils.hastack_sqlite_pg import Checksum, ConversionError, convert, decide, load_order, plan

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - reported by main()
    psycopg = None


class LoadError(Exception):
    pass


def read_source(path):
    conn = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(path), uri=True)
    tables, references, counters = {}, {}, {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        tables[name] = [row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (name,))]
        references[name] = {row[2] for row in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (name,))}
    if "sqlite_sequence" in tables:
        counters = dict(conn.execute("SELECT name, seq FROM sqlite_sequence"))
    return conn, tables, references, counters


def read_target(conn, schema):
    tables = {}
    for table, column, data_type in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (schema,)):
        tables.setdefault(table, {})[column] = data_type
    return tables


def source_rows(conn, table, columns, types):
    """Converted rows of a SQLite table; a value that does not convert names its row."""
    # Names come from the file's own schema, quoted as SQLite quotes identifiers.
    query = "SELECT %s FROM %s" % (", ".join(map(_quote, columns)), _quote(table))  # noqa: S608
    for raw in conn.execute(query):
        try:
            yield [convert(value, kind) for value, kind in zip(raw, types, strict=True)]
        except ConversionError as exc:
            column = next(c for c, v, k in zip(columns, raw, types, strict=True) if _fails(v, k))
            raise LoadError("table %s, row %s, column %s: %s" % (table, _row_label(columns, raw), column, exc)) from exc


def _quote(name):
    return '"%s"' % name.replace('"', '""')


def _fails(value, kind):
    try:
        convert(value, kind)
    except ConversionError:
        return True
    return False


def _row_label(columns, raw):
    shown = zip(columns[:2], raw[:2], strict=True)
    return ", ".join("%s=%r" % (c, v if not isinstance(v, (str, bytes)) else v[:40]) for c, v in shown)


def table_ident(schema, table):
    return sql.Identifier(schema, table)


def target_checksum(conn, schema, table, columns, types):
    check = Checksum()
    with conn.cursor(name="hastack_checksum_%s" % abs(hash(table))) as cursor:
        cursor.itersize = 5000
        cursor.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, columns)),
                                                           table_ident(schema, table)))
        for row in cursor:
            check.add(row, types)
    return check


def source_checksum(conn, table, columns, types):
    check = Checksum()
    for row in source_rows(conn, table, columns, types):
        check.add(row, types)
    return check


def drop_deferred(conn, schema, tables):
    """Drop the loaded tables' secondary indexes and the foreign keys that touch them;
    returns the statements that create them again."""
    oids = [sql.Identifier(schema, t).as_string(conn) for t in tables]
    recreate = []
    fks = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND (conrelid = ANY(%s::regclass[]) OR confrelid = ANY(%s::regclass[]))",
        (oids, oids)).fetchall()
    for table, name, definition in fks:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(table), sql.Identifier(name)))
        recreate.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(table), sql.Identifier(name), sql.SQL(definition)))
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = ANY(%s::regclass[]) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
        "WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)", (oids,)).fetchall()
    for name, definition in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))
        recreate.insert(0, sql.SQL(definition))
    return recreate


def set_sequences(conn, schema, table, columns, counters):
    done = {}
    for column in columns:
        seq = conn.execute("SELECT pg_get_serial_sequence(%s, %s)",
                           (sql.Identifier(schema, table).as_string(conn), column)).fetchone()[0]
        if not seq:
            continue
        top = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column), table_ident(schema, table))).fetchone()[0]
        top = max(v for v in (top, counters.get(table), 0) if v is not None)
        conn.execute("SELECT setval(%s, %s, %s)", (seq, max(top, 1), top > 0))
        done[seq] = top
    return done


def load(conn, source, schema, tables, meta, counters, replace):
    sequences, checks = {}, {}
    if replace:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(table_ident(schema, t) for t in tables)))
    recreate = drop_deferred(conn, schema, tables)
    with conn.cursor() as cursor:
        for table in tables:
            columns, types = meta[table]
            check = Checksum()
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                table_ident(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            with cursor.copy(copy_sql) as copy:
                for row in source_rows(source, table, columns, types):
                    copy.write_row(row)
                    check.add(row, types)
            checks[table] = check
    for statement in recreate:
        conn.execute(statement)
    for table in tables:
        sequences.update(set_sequences(conn, schema, table, meta[table][0], counters))
    return checks, sequences


def run(module, p):
    started = time.monotonic()
    try:
        source, source_tables, references, counters = read_source(p["sqlite_path"])
    except sqlite3.Error as exc:
        module.fail_json(msg="cannot read the SQLite file %s: %s. Nothing was changed." % (p["sqlite_path"], exc))
    try:
        conn = psycopg.connect(host=p["db_host"], port=p["db_port"], dbname=p["db_name"], user=p["db_user"],
                               password=p["db_password"], connect_timeout=p["connect_timeout"],
                               sslmode=p["sslmode"], sslrootcert=p["sslrootcert"], application_name="hastack-migrate")
    except psycopg.Error as exc:
        module.fail_json(msg="cannot connect to PostgreSQL %s@%s:%s/%s: %s. Check the DB VIP, the password "
                             "(vault) and pg_hba for this host. Nothing was changed."
                             % (p["db_user"], p["db_host"], p["db_port"], p["db_name"],
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
    with conn:
        target_tables = read_target(conn, p["db_schema"])
        names, problems = plan(source_tables, target_tables, set(p["exclude_tables"]))
        if problems:
            module.fail_json(msg="the PostgreSQL schema does not fit the SQLite data: %s. Nothing was changed."
                                 % "; ".join(problems))
        tables = load_order(names, references)
        meta = {t: (source_tables[t], [target_tables[t][c] for c in source_tables[t]]) for t in tables}
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_ident(p["db_schema"], t)))
                  .fetchone()[0] for t in tables}
        empty = all(c == 0 for c in counts.values())
        src, tgt = {}, {}
        if not empty or module.check_mode:
            src = {t: source_checksum(source, t, *meta[t]) for t in tables}
        if not empty:
            tgt = {t: target_checksum(conn, p["db_schema"], t, *meta[t]) for t in tables}
        action = decide({t: {"rows": c.rows, "checksum": c.hexdigest} for t, c in src.items()},
                        {t: {"rows": c.rows, "checksum": c.hexdigest} for t, c in tgt.items()} if tgt
                        else {t: {"rows": 0} for t in tables}, p["replace"])
        result = dict(action=action, source_bytes=os.path.getsize(p["sqlite_path"]))
        if action == "refuse" and not module.check_mode:
            module.fail_json(msg="the target tables already hold other rows (%s); run with migrate_replace=true "
                                 "to replace them, or drop them after checking. Nothing was changed."
                                 % ", ".join("%s: %d" % (t, n) for t, n in counts.items() if n), **result)
        if action == "done" or module.check_mode:
            rows = sum(c.rows for c in src.values())
            module.exit_json(changed=action in ("load", "replace"), rows=rows, seconds=0.0, rows_per_second=0.0,
                             tables=[{"name": t, "rows": src[t].rows, "source_checksum": src[t].hexdigest,
                                      "target_checksum": tgt[t].hexdigest if t in tgt else None} for t in tables],
                             **result)
        conn.execute("SET LOCAL lock_timeout = '10s'")
        loaded = time.monotonic()
        src, sequences = load(conn, source, p["db_schema"], tables, meta, counters, action == "replace")
        tgt = {t: target_checksum(conn, p["db_schema"], t, *meta[t]) for t in tables}
        report = [{"name": t, "rows": src[t].rows, "source_checksum": src[t].hexdigest,
                   "target_checksum": tgt[t].hexdigest} for t in tables]
        differ = [r for r in report if (r["rows"], r["source_checksum"]) != (tgt[r["name"]].rows, r["target_checksum"])]
        if differ:
            raise LoadError("after the load PostgreSQL differs from the SQLite copy in %s"
                            % ", ".join("%s (%d rows read, %d in PostgreSQL)" % (r["name"], r["rows"],
                                                                                  tgt[r["name"]].rows) for r in differ))
    seconds = time.monotonic() - loaded
    rows = sum(r["rows"] for r in report)
    module.exit_json(changed=True, tables=report, rows=rows, sequences=sequences, seconds=round(seconds, 3),
                     rows_per_second=round(rows / seconds, 1) if seconds else 0.0,
                     total_seconds=round(time.monotonic() - started, 3), **result)


def main():
    module = AnsibleModule(
        argument_spec=tls_client_argument_spec(
            sqlite_path=dict(type="path", required=True),
            db_host=dict(type="str", required=True),
            db_port=dict(type="int", default=5432),
            db_name=dict(type="str", required=True),
            db_user=dict(type="str", required=True),
            db_password=dict(type="str", required=True, no_log=True),
            db_schema=dict(type="str", default="public"),
            exclude_tables=dict(type="list", elements="str", default=["schema_migrations"]),
            replace=dict(type="bool", default=False),
            connect_timeout=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    if psycopg is None:
        module.fail_json(msg="psycopg 3 is missing on %s: install python3-psycopg (roles/app does)." % os.uname()[1])
    if not os.path.isfile(module.params["sqlite_path"]):
        module.fail_json(msg="%s does not exist. Nothing was changed." % module.params["sqlite_path"])
    try:
        run(module, module.params)
    except (LoadError, psycopg.Error) as exc:
        # The connection's context manager rolled the transaction back: nothing is loaded.
        module.fail_json(msg="the load into PostgreSQL failed and was rolled back (the target is as it was): %s"
                             % (str(exc).strip() or type(exc).__name__))


if __name__ == "__main__":
    main()
