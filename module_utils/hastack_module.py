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


# How a module that connects over the network verifies the server (libpq's sslmode and
# sslrootcert): the postgresql role passes verify-full and the internal CA's certificate.
TLS_CLIENT_OPTIONS = {
    "sslmode": dict(type="str", default="prefer", choices=["disable", "prefer", "require", "verify-ca", "verify-full"]),
    "sslrootcert": dict(type="path"),
}


def tls_client_argument_spec(**extra):
    """sslmode and sslrootcert (fresh copies), plus the module's own options."""
    spec = {name: dict(option) for name, option in TLS_CLIENT_OPTIONS.items()}
    spec.update(extra)
    return spec


def local_postgres_argument_spec(*names, **extra):
    """The shared options named (fresh copies), plus the module's own."""
    spec = {name: dict(LOCAL_POSTGRES_OPTIONS[name]) for name in names}
    spec.update(extra)
    return spec
