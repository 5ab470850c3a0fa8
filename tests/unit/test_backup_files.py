"""roles/backup/files/hastack_files.py and hastack-backup-source: redaction, archives and
their checks, the files part in the manifest, and what the source host's forced command
lets through. The pulls over SSH run for real in molecule/backup."""

import json
import os
import pathlib
import subprocess
import sys
import tarfile

from script_loader import load_script

sys.dont_write_bytecode = True
FILES = pathlib.Path(__file__).resolve().parents[2] / "roles/backup/files"
sys.path.insert(0, str(FILES))
import hastack_files  # noqa: E402


source = load_script("hastack_backup_source", FILES / "hastack-backup-source")
backup = load_script("hastack_backup", FILES / "hastack-backup")

ENV = """# the app's environment
DATABASE_URL=postgresql://hastack:p%40ss:w0rd@198.18.1.100:5432/hastack
SECRET_KEY="abc def"
export API_TOKEN=tok123
aws_secret_access_key: zzz
PORT=8000
UPLOADS_DIR=/var/lib/hastack-app/uploads
# PASSWORD=in a comment stays
EMPTY_PASSWORD=
"""


def test_secret_values_and_url_passwords_are_redacted_the_rest_kept():
    text, found = hastack_files.redact_text(ENV)
    assert "DATABASE_URL=postgresql://hastack:REDACTED@198.18.1.100:5432/hastack\n" in text
    assert 'SECRET_KEY=REDACTED\n' in text
    assert "export API_TOKEN=REDACTED\n" in text
    assert "aws_secret_access_key: REDACTED\n" in text
    assert "PORT=8000\n" in text and "UPLOADS_DIR=/var/lib/hastack-app/uploads\n" in text
    assert "# PASSWORD=in a comment stays\n" in text and "EMPTY_PASSWORD=\n" in text
    for secret in ("p%40ss", "w0rd", "abc def", "tok123", "zzz"):
        assert secret not in text
    assert found == ["DATABASE_URL (password in URL)", "SECRET_KEY", "API_TOKEN", "aws_secret_access_key"]


def test_redaction_is_stable_and_leaves_urls_without_password_alone():
    text, _ = hastack_files.redact_text(ENV)
    assert hastack_files.redact_text(text) == (text, [])
    line = "HEALTH_URL=http://127.0.0.1:8000/health\nLAST=1"
    assert hastack_files.redact_text(line) == (line, [])


def test_private_keys_are_redacted():
    pem = "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\nNzaC1\n-----END OPENSSH PRIVATE KEY-----\ny\n"
    text, found = hastack_files.redact_text(pem)
    assert "b3Blbn" not in text and "REDACTED" in text and found == ["OPENSSH PRIVATE KEY"]


def test_redact_tree_rewrites_text_and_leaves_out_what_it_cannot_read(tmp_path):
    (tmp_path / "app.env").write_text(ENV)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "store.p12").write_bytes(b"\xff\xfe\x00secret")
    (tmp_path / "plain.txt").write_text("nothing\n")
    redacted, removed = hastack_files.redact_tree(str(tmp_path))
    assert "app.env: SECRET_KEY" in redacted
    assert removed == ["sub/store.p12"] and not (tmp_path / "sub" / "store.p12").exists()
    assert "tok123" not in (tmp_path / "app.env").read_text()


def tree(root):
    (root / "a" / "b").mkdir(parents=True)
    for i in range(5):
        (root / f"f{i}.txt").write_text(f"file {i}\n")
    (root / "a" / "b" / "deep.bin").write_bytes(os.urandom(4096))
    os.symlink("f0.txt", root / "link")
    return 6


def test_an_archive_counts_its_files_and_checks_clean(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    expected = tree(src)
    target = str(tmp_path / "x.tar.gz")
    assert hastack_files.make_archive(str(src), target) == expected
    with tarfile.open(target) as archive:
        names = archive.getnames()
        assert all(m.uname == "" and m.gname == "" for m in archive.getmembers())
    assert "a/b/deep.bin" in names and "link" in names and not any(n.startswith("/") for n in names)
    assert hastack_files.check_archive(target, expected) == []


def test_a_truncated_archive_or_a_wrong_count_is_a_problem(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    expected = tree(src)
    target = tmp_path / "x.tar.gz"
    hastack_files.make_archive(str(src), str(target))
    assert hastack_files.check_archive(str(target), expected + 1) == [
        "the archive holds 6 files, the manifest says 7"]
    target.write_bytes(target.read_bytes()[:-200])
    problems = hastack_files.check_archive(str(target), expected)
    assert problems and "does not extract" in problems[-1]


def fake_pull(files):
    def pull(cfg, src, staging):
        if files is None:
            raise RuntimeError("rsync from app1:%s failed (exit 23): No such file or directory" % src["path"])
        for name, text in files.items():
            (pathlib.Path(staging) / name).write_text(text)
    return pull


def test_a_redacted_part_never_stages_on_the_backup_disk(tmp_path):
    cfg = {"files_secret_staging": str(tmp_path / "run")}
    folder = tmp_path / "backup"
    folder.mkdir()
    part = {}
    staged = []

    def pull(cfg, src, staging):
        staged.append(staging)
        fake_pull({"app.env": ENV})(cfg, src, staging)

    hastack_files.backup_source(cfg, {"host": "app1", "path": "/etc/hastack-app", "redact": True},
                                str(folder), part, puller=pull)
    assert staged[0].startswith(str(tmp_path / "run")) and not os.path.exists(staged[0])
    assert part["file"] == "files-app1-etc-hastack-app.tar.gz" and part["file_count"] == 1
    assert "app.env: SECRET_KEY" in part["redacted"]
    with tarfile.open(folder / part["file"]) as archive:
        text = archive.extractfile("app.env").read().decode()
    assert "tok123" not in text and "PORT=8000" in text
    assert os.listdir(folder) == [part["file"]]


def test_a_failing_files_part_is_recorded_and_the_database_parts_are_kept(tmp_path, monkeypatch):
    root = tmp_path / "dumps"
    root.mkdir()
    cfg = {"dump_root": str(root), "db_host": "198.18.1.100", "databases": ["app"],
           "files_sources": [{"host": "app1", "path": "/var/lib/hastack-app/uploads", "address": "198.18.1.21"},
                             {"host": "app1", "path": "/etc/hastack-app", "address": "198.18.1.21", "redact": True}],
           "files_secret_staging": str(tmp_path / "run")}

    def dump_database(cfg, dbname, folder, part):
        pathlib.Path(folder, dbname + ".dump").write_bytes(b"PGDMP")
        part.update(file=dbname + ".dump", size=5, sha256="s", row_counts={})

    def dump_globals(cfg, folder, part):
        pathlib.Path(folder, "globals.sql").write_text("--")
        part.update(file="globals.sql", size=2, sha256="s")

    def backup_source(cfg, src, folder, part):
        pull = fake_pull(None if src["path"].endswith("uploads") else {"app.env": ENV})
        original(cfg, src, folder, part, puller=pull)

    original = hastack_files.backup_source
    monkeypatch.setattr(backup, "source_info", lambda cfg: {"node": "db1", "role": "primary"})
    monkeypatch.setattr(backup, "dump_database", dump_database)
    monkeypatch.setattr(backup, "dump_globals", dump_globals)
    monkeypatch.setattr(backup.hastack_files, "backup_source", backup_source)
    name, manifest = backup.dump(cfg)
    assert manifest["ok"] is False
    parts = {p["name"]: p for p in manifest["parts"]}
    assert parts["database app"]["ok"] and parts["globals"]["ok"]
    uploads = parts["files app1:/var/lib/hastack-app/uploads"]
    assert uploads["ok"] is False and "No such file or directory" in uploads["error"]
    config = parts["files app1:/etc/hastack-app"]
    assert config["ok"] and config["file_count"] == 1 and config["redacted_secrets"] is True
    assert config["sha256"] == backup.sha256(str(root / name / config["file"]))
    assert sorted(os.listdir(root / name)) == ["app.dump", config["file"], "globals.sql", "manifest.json"]
    assert json.loads((root / name / "manifest.json").read_text()) == manifest
    # verify reports the failed part; the good archive passes its checks
    problems = backup.verify_run({"dump_root": str(root)}, name, {"parts": [uploads, config]})
    assert problems == ["files app1:/var/lib/hastack-app/uploads failed when taken: " + uploads["error"]]


def test_locate_files_names_the_newest_backup_with_good_files_parts(tmp_path, capsys):
    for name, ok in (("20261101T000000Z", True), ("20261102T000000Z", False)):
        (tmp_path / name).mkdir()
        part = {"name": "files app1:/u", "kind": "files", "host": "app1", "path": "/u", "ok": ok, "file": "f.tar.gz"}
        (tmp_path / name / "manifest.json").write_text(json.dumps({"started": name, "parts": [part]}))
    assert backup.cmd_locate_files({"dump_root": str(tmp_path)}) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["backup"] == "20261101T000000Z"
    assert found["parts"][0]["archive"] == str(tmp_path / "20261101T000000Z" / "f.tar.gz")
    assert backup.cmd_locate_files({"dump_root": str(tmp_path)}, "20261102T000000Z") == 1


PATHS = ["/var/lib/hastack-app/uploads", "/etc/hastack-app"]


def test_the_forced_command_lets_through_only_a_read_of_a_listed_folder():
    read = "rsync --server --sender -logDtpre.iLsfxCIvu --numeric-ids . /var/lib/hastack-app/uploads/"
    assert source.allowed(read, PATHS) == ["/usr/bin/rsync", "--server", "--sender", "-logDtpre.iLsfxCIvu",
                                           "--numeric-ids", ".", "/var/lib/hastack-app/uploads/"]
    for refused in (
            "rsync --server -logDtpre.iLsfxCIvu . /var/lib/hastack-app/uploads/",  # a write
            "rsync --server --sender -logDtpre.iLsfxCIvu --remove-source-files . /etc/hastack-app/",
            "rsync --server --sender -vlogDtpre.iLsfxCIvu . /etc/shadow",
            "rsync --server --sender -e.iLsfxCIvu . /etc/hastack-app/../shadow",
            "rsync --server --sender -a . /etc/hastack-app-other/",
            "rsync --server --sender -logDtpLre.iLsfxCIvu . /var/lib/hastack-app/uploads/",  # follow links out
            "rsync --server --sender -kre.iLsfxCIvu . /var/lib/hastack-app/uploads/",
            "sh -c id",
            "rsync --server --sender -a . /etc/hastack-app/ ; id",
            "",
    ):
        assert source.allowed(refused, PATHS) is None, refused


def test_the_forced_command_refuses_with_a_message(tmp_path):
    config = tmp_path / "paths.json"
    config.write_text(json.dumps({"paths": PATHS}))
    script = (FILES / "hastack-backup-source").read_text().replace("/etc/hastack-backup-source.json", str(config))
    (tmp_path / "s.py").write_text(script)
    result = subprocess.run([sys.executable, str(tmp_path / "s.py")], env={"SSH_ORIGINAL_COMMAND": "id"},  # noqa: S603
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "refused: 'id'" in result.stderr
