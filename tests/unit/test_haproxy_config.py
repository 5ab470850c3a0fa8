"""roles/haproxy's configuration for both database modes, rendered with the role's defaults
(molecule/front runs the PostgreSQL mode on real hosts; SQLite mode is proven here)."""

import pathlib

import pytest
from role_template import render_role_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "haproxy"
HOSTS = {"app1": "10.0.0.21", "app2": "10.0.0.22"}


def render(host, **overrides):
    values = {"inventory_hostname": host, "hastack_address": HOSTS[host], "hastack_app_vip": "10.0.0.101",
              "groups": {"app": list(HOSTS)}, "ansible_managed": "managed",
              "hostvars": {name: {"hastack_address": address} for name, address in HOSTS.items()}}
    return render_role_template(ROLE, "etc/haproxy/haproxy.cfg.j2", values, overrides)


def section(config, name):
    return config.split(f"\n{name}\n", 1)[1].split("\n\n", 1)[0]


def servers(config, backend="backend app"):
    return [line.split() for line in section(config, backend).splitlines() if line.strip().startswith("server ")]


def test_postgresql_mode_balances_over_every_app_server():
    config = render("app1")
    assert [s[1:3] + s[4:] for s in servers(config)] == [["app1", "10.0.0.21:8000"], ["app2", "10.0.0.22:8000"]]
    assert "srv_is_up" not in config and "nbsrv(app) ge 1" in config


@pytest.mark.parametrize("host, other", [("app1", "app2"), ("app2", "app1")])
def test_sqlite_mode_prefers_the_local_server_and_ready_follows_it(host, other):
    config = render(host, app_database_url="sqlite:////var/lib/hastack-app/app.db")
    flags = {s[1]: s[4:] for s in servers(config)}
    assert flags[host] == [] and flags[other] == ["backup"]
    # The app VIP stays where the (only) writer runs.
    assert f"if {{ srv_is_up(app/{host}) }}" in config


def test_posts_are_never_retried_after_they_reached_a_server():
    config = render("app1")
    assert "retry-on conn-failure empty-response response-timeout" in config
    assert "http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS" in config
    assert "METH_POST" not in config


def test_tls_is_intermediate_only():
    config = render("app1")
    ciphers = next(line.split()[1] for line in config.splitlines() if "ssl-default-bind-ciphers " in line)
    assert "no-tlsv10 no-tlsv11" in config
    assert all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers.split(":"))
    assert "ssl crt /etc/haproxy/certs/app.pem" in config
    assert "redirect scheme https code 301" in config
    assert 'Strict-Transport-Security "max-age=63072000"' in config


def test_uploads_stay_on_the_local_app_server_in_postgresql_mode():
    config = render("app2")
    assert "use_backend app_local if { path_beg /api/files }" in config
    assert [server[1] for server in servers(config, "backend app_local")] == ["app2"]
    # SQLite mode: one app server anyway, no second backend.
    assert "app_local" not in render("app2", app_database_url="sqlite:////var/lib/hastack-app/app.db")
