"""roles/file_sync/files/hastack-file-sync: what the receiver's forced command accepts, the
atomic snapshot switch and retention, on folders made here. The rsync over SSH between two
app servers runs for real in molecule/ha (tests/test_file_sync.py)."""

import os
import pathlib
import sys

import pytest

from script_loader import load_script

sys.dont_write_bytecode = True

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "roles/file_sync/files/hastack-file-sync"
sync = load_script("hastack_file_sync", SCRIPT)

STAMPS = ["20261128T070000.000001Z", "20261128T070100.000001Z", "20261128T070200.000001Z",
          "20261128T070300.000001Z"]


@pytest.mark.parametrize("command, kind", [
    ("rsync --server -logDtpre.iLsfxCIvu --link-dest=/uploads/current/ . /uploads/incoming/x/", "rsync"),
    ("commit uploads 20261128T070000.000001Z", "commit"),
    ("id", "refuse"),
    ("", "refuse"),
    (None, "refuse"),
    ("commit ../etc 20261128T070000.000001Z", "refuse"),
    ("commit uploads 20261128T070000.000001Z; sh", "refuse"),
    ("commit uploads ../../x", "refuse"),
    ("sh -c 'rsync --server'", "refuse"),
])
def test_the_forced_command_allows_rsync_and_commit_only(command, kind):
    assert sync.parse_forced(command)[0] == kind


def test_retention_keeps_the_newest_and_never_the_current_one():
    assert sync.to_prune(STAMPS, STAMPS[-1], 2) == STAMPS[:2]
    # A current snapshot older than the newest ones (clock moved back) stays.
    assert sync.to_prune(STAMPS, STAMPS[0], 2) == [STAMPS[1]]
    assert sync.to_prune(STAMPS + [".current.new", "junk"], STAMPS[-1], 10) == []


def make_receiver(tmp_path, keep=2):
    root = tmp_path / "folders" / "uploads"
    (root / "incoming").mkdir(parents=True)
    (root / "snapshots").mkdir()
    return {"base": str(tmp_path), "keep": keep, "folders": [{"name": "uploads"}]}, root


def receive_into(root, stamp, content):
    (root / "incoming" / stamp).mkdir()
    (root / "incoming" / stamp / "a.txt").write_text(content)


def test_commit_switches_current_atomically_and_keeps_a_few(tmp_path):
    config, root = make_receiver(tmp_path)
    for number, stamp in enumerate(STAMPS[:3]):
        receive_into(root, stamp, "v%d" % number)
        sync.commit(config, "uploads", stamp)
        assert os.readlink(root / "current") == "snapshots/" + stamp
        assert (root / "current" / "a.txt").read_text() == "v%d" % number
    assert sorted(os.listdir(root / "snapshots")) == STAMPS[1:3]
    assert not (root / ".current.new").exists()
    assert sync.current_snapshot(str(root)) == STAMPS[2]


def test_an_interrupted_push_is_never_shown_and_is_cleaned_up(tmp_path):
    config, root = make_receiver(tmp_path)
    receive_into(root, STAMPS[0], "complete")
    sync.commit(config, "uploads", STAMPS[0])
    receive_into(root, STAMPS[1], "half")  # its commit never came
    assert (root / "current" / "a.txt").read_text() == "complete"
    receive_into(root, STAMPS[2], "next")
    sync.commit(config, "uploads", STAMPS[2])
    assert os.listdir(root / "incoming") == []
    assert (root / "current" / "a.txt").read_text() == "next"


def test_commit_refuses_what_was_not_received_or_is_not_configured(tmp_path):
    config, root = make_receiver(tmp_path)
    with pytest.raises(SystemExit, match="nothing received"):
        sync.commit(config, "uploads", STAMPS[0])
    with pytest.raises(SystemExit, match="unknown folder"):
        sync.commit(config, "other", STAMPS[0])
    assert not (root / "current").exists()


def test_receive_refuses_a_shell(tmp_path, monkeypatch, capsys):
    config, _ = make_receiver(tmp_path)
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "id")
    assert sync.receive(config) == 1
    assert "refused" in capsys.readouterr().err


def test_the_push_goes_into_a_new_snapshot_linked_to_the_current_one():
    config = {"key": "/etc/hastack-file-sync/ssh/id_ed25519", "known_hosts": "/etc/hastack-file-sync/ssh/known_hosts",
              "timeout": 30, "user": "hastack-sync"}
    argv = sync.rsync_push_command(config, {"name": "uploads", "path": "/var/lib/app/uploads"}, "10.0.0.2", STAMPS[0])
    assert "--exclude=.*" in argv and "--link-dest=/uploads/current/" in argv
    assert not [a for a in argv if a.startswith("--delete")]
    assert argv[-2:] == ["/var/lib/app/uploads/", "hastack-sync@10.0.0.2:/uploads/incoming/%s/" % STAMPS[0]]
    assert "StrictHostKeyChecking=yes" in argv[argv.index("-e") + 1]
