# -*- coding: utf-8 -*-
# What hastack's modules share as modules: the options that name the local PostgreSQL.
# Paths and the unit have no default (no PostgreSQL version baked into a module): the
# postgresql role's task files pass its variables (postgresql_data_directory, ...), which
# is the only place that calls each module (roles/postgresql/tasks/{node_facts,fence,
# promote,rejoin}.yml).

from __future__ import annotations

LOCAL_POSTGRES_OPTIONS = {
    "data_directory": dict(type="path", required=True),
    "config_dir": dict(type="path", required=True),
    "bin_dir": dict(type="path", required=True),
    "service": dict(type="str", required=True),
    "port": dict(type="int", default=5432),
    "socket_dir": dict(type="path", default="/var/run/postgresql"),
    "login_user": dict(type="str", default="postgres"),
}


def local_postgres_argument_spec(*names, **extra):
    """The shared options named (fresh copies), plus the module's own."""
    spec = {name: dict(LOCAL_POSTGRES_OPTIONS[name]) for name in names}
    spec.update(extra)
    return spec
