"""Uploaded files: PUT /api/files/<name> stores the raw request body, GET /api/files/<name>
returns it, GET /api/files lists them.

The files live in UPLOADS_DIR, outside git and outside the database, so the endpoint
behaves the same whichever database the app uses; roles/file_sync copies the folder to
the passive app server. A file is written to a temporary file in the same folder, flushed
to disk and renamed over its name: a reader (or an rsync run) sees the old file or the new
one, never half of one. Temporary names start with '.', which no stored name may, so a
sync excludes them with '.*'.
"""

import os
import re
import tempfile

from flask import Blueprint, current_app, jsonify, request, send_file

DEFAULT_UPLOADS_DIR = "/var/lib/hastack-app/uploads"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
# Letters, digits, '-', '_' and '.', not starting with '.': no path separator, no '..',
# no hidden or temporary name.
NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
CHUNK = 1024 * 1024

blueprint = Blueprint("uploads", __name__)


def init_app(app, uploads_dir=None, max_bytes=None):
    app.config["UPLOADS_DIR"] = uploads_dir or os.environ.get("UPLOADS_DIR", DEFAULT_UPLOADS_DIR)
    app.config["UPLOADS_MAX_BYTES"] = int(max_bytes or os.environ.get("UPLOADS_MAX_BYTES", DEFAULT_MAX_BYTES))
    app.register_blueprint(blueprint)


def valid_name(name):
    return bool(NAME.match(name))


def _folder():
    return current_app.config["UPLOADS_DIR"]


def store(folder, name, stream, max_bytes):
    """Write the stream to folder/name atomically; returns the size, or None when the body
    is larger than max_bytes (nothing is left behind then)."""
    fd, temporary = tempfile.mkstemp(prefix=".upload-", dir=folder)
    try:
        size = 0
        with os.fdopen(fd, "wb") as handle:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    return None
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, os.path.join(folder, name))
        temporary = None
        # The rename is durable only once the folder itself is on disk.
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return size
    finally:
        if temporary is not None:
            os.unlink(temporary)


@blueprint.route("/api/files/<name>", methods=["PUT", "POST"])
def put_file(name):
    if not valid_name(name):
        return jsonify(error="name: 1-128 of A-Z a-z 0-9 . _ -, not starting with '.'"), 400
    limit = current_app.config["UPLOADS_MAX_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error="file larger than %d bytes" % limit), 413
    try:
        size = store(_folder(), name, request.stream, limit)
    except OSError as exc:
        return jsonify(error="file not saved", detail=str(exc)), 503
    if size is None:
        return jsonify(error="file larger than %d bytes" % limit), 413
    return jsonify(name=name, size=size), 201


@blueprint.get("/api/files/<name>")
def get_file(name):
    path = os.path.join(_folder(), name)
    # Only regular files the app wrote: never follow a symlink out of the folder.
    if not valid_name(name) or os.path.islink(path) or not os.path.isfile(path):
        return jsonify(error="no such file"), 404
    return send_file(path, mimetype="application/octet-stream", max_age=0)


@blueprint.get("/api/files")
def list_files():
    try:
        entries = sorted(os.scandir(_folder()), key=lambda entry: entry.name)
    except OSError as exc:
        return jsonify(error="uploads folder unreadable", detail=str(exc)), 503
    files = [{"name": e.name, "size": e.stat().st_size} for e in entries
             if valid_name(e.name) and e.is_file(follow_symlinks=False)]
    return jsonify(files=files), 200
