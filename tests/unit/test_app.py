"""The reference app's request handling (app/): validation and what it answers while the
database is unreachable. Its behaviour against a real cluster is in molecule/ha."""

import pathlib
import sys

import pytest

sys.dont_write_bytecode = True  # roles/app copies app/ to the servers as it is
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "app"))

from hastack_app import _valid_entry, create_app  # noqa: E402

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


def test_sqlite_and_unknown_urls_are_refused_with_a_reason():
    with pytest.raises(NotImplementedError, match="postgresql://"):
        create_app("sqlite:///var/lib/app.db")
    with pytest.raises(ValueError, match="postgresql://"):
        create_app("mysql://x")


def test_unreachable_database_answers_503_and_saves_nothing():
    client = create_app(UNREACHABLE).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"
    response = client.post("/api/entries", json={"machine": "lathe", "member": "ana"})
    assert response.status_code == 503 and "not saved" in response.get_json()["error"]
    assert client.post("/api/entries", json={"machine": ""}).status_code == 400
