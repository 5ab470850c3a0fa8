"""The files and configuration parts of a hastack backup: a folder pulled from a host
with rsync over SSH, secrets redacted where asked, archived as tar.gz, and the checks
verify runs on such an archive. Installed beside hastack-backup
(/usr/local/lib/hastack-backup); the pure parts are unit-tested in tests/unit."""

import os
import re
import shutil
import subprocess
import tarfile
import tempfile

# A key whose name contains one of these holds a secret: its value never leaves the host
# in clear (SECRET_KEY, DB_PASSWORD, API_TOKEN, AWS_SECRET_ACCESS_KEY, ...).
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PRIVATE")
REDACTED = "REDACTED"
_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_.-]*)(\s*[=:]\s*)(.*?)(\r?\n?)$")
# scheme://user:password@host (DATABASE_URL and co.): the password up to the last @.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):([^\s]*)@")
_PEM_KEY = re.compile(r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.*?-----END \1-----", re.S)


def is_secret_name(name):
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def redact_text(text):
    """(text with secret values replaced by REDACTED, [what was redacted]). Lines
    NAME=value and NAME: value whose NAME looks secret lose their value; passwords inside
    URLs and PEM private keys are replaced wherever they are. Comments stay."""
    found = []

    def pem(match):
        found.append(match.group(1))
        return "-----BEGIN %s-----\n%s\n-----END %s-----" % (match.group(1), REDACTED, match.group(1))

    text = _PEM_KEY.sub(pem, text)
    out = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        match = _ASSIGNMENT.match(line)
        if match and is_secret_name(match.group(2)) and match.group(4) and match.group(4) != REDACTED:
            prefix, name, sep, _, end = match.groups()
            found.append(name)
            out.append(prefix + name + sep + REDACTED + end)
            continue
        new = _URL_PASSWORD.sub(r"\1:" + REDACTED + "@", line)
        if any(m.group(2) != REDACTED for m in _URL_PASSWORD.finditer(line)):
            found.append((match.group(2) if match else "URL") + " (password in URL)")
        out.append(new)
    return "".join(out), found


def redact_tree(root):
    """Redact every text file under root in place. Returns ([redacted "file: what"],
    [files removed because they are not text and so cannot be checked])."""
    redacted, removed = [], []
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except UnicodeDecodeError:
                os.unlink(path)  # e.g. a binary key store: not kept rather than kept in clear
                removed.append(rel)
                continue
            new, found = redact_text(text)
            if found:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(new)
                redacted += ["%s: %s" % (rel, what) for what in found]
    return redacted, removed


def part_file_name(host, path):
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "%s-%s" % (host, path)).strip("-")
    return "files-%s.tar.gz" % slug


def make_archive(source_dir, target):
    """tar.gz of source_dir's contents (names relative to it, owners and modes kept).
    Returns the number of regular files in it."""
    count = 0
    with tarfile.open(target, "w:gz") as archive:
        for folder, dirs, files in os.walk(source_dir):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(folder, name)
                info = archive.gettarinfo(path, os.path.relpath(path, source_dir))
                # The ids are the source host's (rsync --numeric-ids); names looked up
                # here would be this host's and map them to other users on restore.
                info.uname = info.gname = ""
                if info.isreg():
                    count += 1
                    with open(path, "rb") as handle:
                        archive.addfile(info, handle)
                else:
                    archive.addfile(info)
    return count


def check_archive(path, expected_count):
    """Problems (empty: fine) found by reading every member of the archive to its end,
    as an extraction does, and counting its regular files against the manifest."""
    problems, count = [], 0
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    problems.append("unsafe member name %s" % member.name)
                if member.isreg():
                    count += 1
                    handle, read = archive.extractfile(member), 0
                    while block := handle.read(1 << 20):
                        read += len(block)
                    if read != member.size:
                        problems.append("%s: %d of %d bytes" % (member.name, read, member.size))
    except (OSError, EOFError, tarfile.TarError) as exc:
        return problems + ["the archive does not extract: %s" % exc]
    if count != expected_count:
        problems.append("the archive holds %d files, the manifest says %d" % (count, expected_count))
    return problems


def pull(cfg, source, staging):
    """rsync the source folder's contents into staging, as the restricted user."""
    ssh = ("ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=10 -i %s"
           % cfg["files_key"])
    remote = "%s@%s:%s/" % (cfg["files_user"], source["address"], source["path"].rstrip("/"))
    result = subprocess.run(["rsync", "-a", "--numeric-ids", "-e", ssh, remote, staging + "/"],
                            capture_output=True, text=True, check=False, timeout=cfg.get("files_timeout", 3600))
    if result.returncode != 0:
        raise RuntimeError("rsync from %s:%s failed (exit %d): %s" % (
            source["host"], source["path"], result.returncode, result.stderr.strip()[-500:]))


def backup_source(cfg, source, folder, part, puller=pull):
    """One files part: pull, redact when asked, archive into folder; fills part in."""
    name = part_file_name(source["host"], source["path"])
    # Configuration is staged in tmpfs: its secrets never reach a disk in clear.
    stage_root = cfg.get("files_secret_staging", "/run/hastack-backup") if source.get("redact") else folder
    os.makedirs(stage_root, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".stage-", dir=stage_root)
    try:
        puller(cfg, source, staging)
        redacted, removed = redact_tree(staging) if source.get("redact") else ([], [])
        target = os.path.join(folder, name)
        count = make_archive(staging, target + ".tmp")
        os.rename(target + ".tmp", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    part.update(file=name, file_count=count)
    if source.get("redact"):
        part.update(redacted=redacted, not_text_left_out=removed)
