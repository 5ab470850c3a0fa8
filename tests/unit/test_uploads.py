"""The reference app's uploads endpoint (app/hastack_app/uploads.py): atomic writes, safe
names, a size limit, no database needed. Its sync to the passive server is in molecule/ha."""

import os
import pathlib
import sys

import pytest

sys.dont_write_bytecode = True  # roles/app copies app/ to the servers as it is
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "app"))

from hastack_app import create_app, uploads  # noqa: E402

# Nothing listens on port 1: the files must not need the database.
UNREACHABLE = "postgresql://hastack:x@127.0.0.1:1/hastack"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path))
    monkeypatch.setenv("UPLOADS_MAX_BYTES", "1000")
    return tmp_path


@pytest.fixture
def client(folder):
    return create_app(UNREACHABLE).test_client()


def test_a_stored_file_comes_back_byte_identical_without_the_database(client, folder):
    body = bytes(range(256)) * 3
    response = client.put("/api/files/photo.jpg", data=body)
    assert response.status_code == 201 and response.get_json() == {"name": "photo.jpg", "size": 768}
    assert (folder / "photo.jpg").read_bytes() == body
    assert oct((folder / "photo.jpg").stat().st_mode & 0o777) == "0o640"
    assert client.get("/api/files/photo.jpg").data == body
    assert client.post("/api/files/photo.jpg", data=b"v2").status_code == 201
    assert client.get("/api/files/photo.jpg").data == b"v2"
    # No temporary file is left behind.
    assert sorted(os.listdir(folder)) == ["photo.jpg"]


def test_listing_shows_stored_files_only(client, folder):
    client.put("/api/files/b.txt", data=b"bb")
    client.put("/api/files/a.txt", data=b"a")
    (folder / ".upload-half").write_bytes(b"x")  # a write in progress
    (folder / "sub").mkdir()
    assert client.get("/api/files").get_json() == {"files": [{"name": "a.txt", "size": 1},
                                                             {"name": "b.txt", "size": 2}]}


@pytest.mark.parametrize("name", ["..", ".hidden", ".upload-x", "a b", "a%2Fb", "x" * 129, "caf\u00e9"])
def test_unsafe_names_are_refused(client, folder, name):
    assert client.put(f"/api/files/{name}", data=b"x").status_code in (400, 404)
    assert client.get(f"/api/files/{name}").status_code == 404
    assert os.listdir(folder) == []


def test_a_path_outside_the_folder_is_never_reached(client, folder):
    assert client.put("/api/files/../escape", data=b"x").status_code == 404
    assert client.get("/api/files/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert not (folder.parent / "escape").exists()
    assert not uploads.valid_name("../etc") and not uploads.valid_name("a/b")


def test_too_large_a_file_is_refused_and_leaves_nothing(client, folder):
    response = client.put("/api/files/big.bin", data=b"x" * 1001)
    assert response.status_code == 413
    assert os.listdir(folder) == []
    assert client.put("/api/files/big.bin", data=b"x" * 1000).status_code == 201


def test_a_body_without_length_is_cut_at_the_limit(folder):
    class Endless:
        def read(self, size):
            return b"y" * size
    assert uploads.store(str(folder), "stream.bin", Endless(), 5000) is None
    assert os.listdir(folder) == []


def test_a_missing_file_and_an_unreadable_folder(client, folder, monkeypatch):
    assert client.get("/api/files/nothing.txt").status_code == 404
    monkeypatch.setenv("UPLOADS_DIR", str(folder / "absent"))
    broken = create_app(UNREACHABLE).test_client()
    assert broken.get("/api/files").status_code == 503
    assert broken.put("/api/files/a.txt", data=b"a").status_code == 503


def test_a_symlink_in_the_folder_is_not_followed(client, folder, tmp_path_factory):
    secret = tmp_path_factory.mktemp("outside") / "secret"
    secret.write_bytes(b"not for you")
    (folder / "link.txt").symlink_to(secret)
    assert client.get("/api/files/link.txt").status_code == 404
    assert client.get("/api/files").get_json() == {"files": []}
