"""The reference app's request handling (app/): validation and what it answers while the
database is unreachable. Its behaviour against a real cluster is in molecule/ha."""

import pathlib
import sys

import pytest

sys.dont_write_bytecode = True  # roles/app copies app/ to the servers as it is
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "app"))

from hastack_app import _valid_entry, create_app, db  # noqa: E402

# Nothing listens on port 1: every connection is refused at once.
UNREACHABLE = "postgresql://hastack:x@127.0.0.1:1/hastack"


@pytest.mark.parametrize("body, problem", [
    (None, "expected a JSON object"),
    ({"machine": "lathe"}, "member"),
    ({"machine": " ", "member": "ana"}, "machine"),
    ({"machine": "lathe", "member": "ana", "minutes": 0}, "minutes"),
    ({"machine": "lathe", "member": "ana", "minutes": True}, "minutes"),
    ({"machine": "x" * 201, "member": "ana"}, "machine"),
])
def test_invalid_entries_are_refused(body, problem):
    entry, message = _valid_entry(body)
    assert entry is None and problem in message


def test_valid_entry_is_trimmed_and_defaults_to_one_minute():
    assert _valid_entry({"machine": " lathe ", "member": "ana"}) == (
        {"machine": "lathe", "member": "ana", "minutes": 1}, None)


def test_unknown_urls_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="postgresql://"):
        create_app("mysql://x")
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        create_app("sqlite:///")


def test_unreachable_database_answers_503_and_saves_nothing():
    client = create_app(UNREACHABLE).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"
    response = client.post("/api/entries", json={"machine": "lathe", "member": "ana"})
    assert response.status_code == 503 and "not saved" in response.get_json()["error"]
    assert client.post("/api/entries", json={"machine": ""}).status_code == 400


@pytest.fixture
def sqlite_url(tmp_path):
    url = "sqlite:///" + str(tmp_path / "app.db")
    assert url.startswith("sqlite:////")
    return url


def test_sqlite_migrations_apply_once_in_wal_mode(sqlite_url, tmp_path):
    assert db.migrate(sqlite_url) == ["001_usage_entries.sql"]
    assert db.migrate(sqlite_url) == []
    conn = db.sqlite_connect(str(tmp_path / "app.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
    with pytest.raises(db.sqlite3.IntegrityError):
        conn.execute("INSERT INTO usage_entries (machine, member, minutes) VALUES ('a', 'b', 0)")


def test_every_postgresql_migration_has_a_sqlite_variant():
    names = sorted(p.name for p in db.MIGRATIONS.glob("*.sql"))
    assert names and names == sorted(p.name for p in db.SQLITE_MIGRATIONS.glob("*.sql"))


def test_sqlite_mode_serves_the_same_endpoints(sqlite_url):
    db.migrate(sqlite_url)
    client = create_app(sqlite_url).test_client()
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["database"] == "sqlite" and health.get_json()["journal_mode"] == "wal"
    ids = [client.post("/api/entries", json={"machine": "lathe", "member": "ana", "minutes": 5}).get_json()["id"]
           for _ in range(3)]
    assert ids == [1, 2, 3]
    assert client.post("/api/entries", json={"machine": "lathe"}).status_code == 400
    assert client.get("/api/entries/count").get_json() == {"count": 3}


def test_sqlite_app_never_creates_a_missing_database(sqlite_url, tmp_path):
    client = create_app(sqlite_url).test_client()
    assert client.get("/health").status_code == 503
    response = client.post("/api/entries", json={"machine": "lathe", "member": "ana"})
    assert response.status_code == 503 and "not saved" in response.get_json()["error"]
    assert not (tmp_path / "app.db").exists()


def test_sqlite_write_waits_for_a_lock_then_answers_503(sqlite_url, tmp_path, monkeypatch):
    db.migrate(sqlite_url)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    holder = db.sqlite_connect(str(tmp_path / "app.db"))
    holder.execute("BEGIN IMMEDIATE")
    client = create_app(sqlite_url).test_client()
    response = client.post("/api/entries", json={"machine": "lathe", "member": "ana"})
    assert response.status_code == 503 and "locked" in response.get_json()["detail"]
    holder.execute("ROLLBACK")
    assert client.post("/api/entries", json={"machine": "lathe", "member": "ana"}).status_code == 201
    assert client.get("/api/entries/count").get_json() == {"count": 1}


def test_migration_statements_are_split_like_sqlite_would():
    script = "-- c\nCREATE TABLE t (a TEXT DEFAULT ';');\nCREATE INDEX i ON t (a);\n"
    assert [s.strip() for s in db._statements(script)] == [
        "CREATE TABLE t (a TEXT DEFAULT ';');", "CREATE INDEX i ON t (a);"]


def test_maintenance_refuses_writes_with_retry_after_and_health_stays_200(sqlite_url, tmp_path, monkeypatch):
    flag = tmp_path / "maintenance"
    monkeypatch.setenv("MAINTENANCE_FILE", str(flag))
    db.migrate(sqlite_url)
    client = create_app(sqlite_url).test_client()
    assert client.get("/health").get_json()["maintenance"] is False
    flag.write_text("12\n")
    response = client.post("/api/entries", json={"machine": "lathe", "member": "ana"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "12"
    assert "maintenance" in response.get_json()["error"]
    assert client.put("/api/files/a.txt", data=b"x").status_code == 503
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["maintenance"] is True
    assert client.get("/api/entries/count").get_json() == {"count": 0}
    flag.unlink()
    assert client.post("/api/entries", json={"machine": "lathe", "member": "ana"}).status_code == 201


def test_a_write_past_the_request_check_is_refused_under_the_lock(sqlite_url, tmp_path):
    """The flag appears between the request's check and the write lock: nothing commits."""
    db.migrate(sqlite_url)
    flag = tmp_path / "maintenance"
    store = db.open_store(sqlite_url, maintenance=flag.exists)
    assert store.add_entry("lathe", "ana", 1)[0] == 1
    flag.write_text("")
    with pytest.raises(db.Maintenance):
        store.add_entry("lathe", "bob", 1)
    assert store.count_entries() == 1


def test_maintenance_answers_503_in_postgresql_mode_too(tmp_path, monkeypatch):
    flag = tmp_path / "maintenance"
    flag.write_text("oops")
    monkeypatch.setenv("MAINTENANCE_FILE", str(flag))
    client = create_app(UNREACHABLE).test_client()
    response = client.post("/api/entries", json={"machine": "lathe", "member": "ana"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert "maintenance" in response.get_json()["error"]
    assert client.get("/health").get_json()["maintenance"] is True
