"""hastack's reference app: members of a machine-sharing community log who used which
machine for how long. It is small on purpose; what it shows is how an app survives a
database failover: it reaches PostgreSQL only through the DB VIP (DATABASE_URL), keeps a
pool whose broken connections are replaced, answers 503 instead of hanging while the
database is away, and acknowledges an entry only after its COMMIT returned.
"""

import json
import os

from flask import Flask, jsonify, request

from hastack_app import db, uploads

MAX_TEXT = 200
# Maintenance (playbooks/migrate_sqlite_to_postgres.yml): while this file exists, every
# write is refused with 503 and Retry-After (its content, in seconds, if it is a number);
# reads and /health go on, /health still answers 200 (the app VIP's check must not move
# the VIP) and says maintenance: true. A file, stat'ed per request: the playbook sets and
# clears it atomically, in both database modes, without restarting the app.
DEFAULT_MAINTENANCE_FILE = "/var/lib/hastack-app/maintenance"
READ_METHODS = ("GET", "HEAD", "OPTIONS")
# roles/app writes release.json next to each release's src/ folder and starts the app in
# that folder through the `current` link; a relative path is read from the working
# directory, which the kernel resolved when the app started: the release this process
# runs, not the one `current` points to after a later switch.
DEFAULT_RELEASE_FILE = "../release.json"


def create_app(database_url=None):
    app = Flask(__name__)
    maintenance_file = os.environ.get("MAINTENANCE_FILE", DEFAULT_MAINTENANCE_FILE)
    store = db.open_store(database_url or os.environ.get("DATABASE_URL", ""),
                          maintenance=lambda: os.path.exists(maintenance_file))
    app.extensions["hastack_store"] = store
    release = _read_release(os.environ.get("APP_RELEASE_FILE", DEFAULT_RELEASE_FILE))
    uploads.init_app(app)  # files: the same in every database mode

    def refused():
        return jsonify(error="maintenance: writes are paused, entry not saved, retry later"), 503, {
            "Retry-After": str(_retry_after(maintenance_file))}

    @app.before_request
    def refuse_writes_in_maintenance():
        if request.method not in READ_METHODS and os.path.exists(maintenance_file):
            return refused()
        return None

    @app.get("/health")
    def health():
        paused = os.path.exists(maintenance_file)
        try:
            state = store.health()
        except db.Unavailable as exc:
            return jsonify(status="error", database="unreachable", error=str(exc), maintenance=paused), 503
        return jsonify(status="ok", maintenance=paused, **state), 200

    @app.get("/version")
    def version():
        return jsonify(release), 200

    @app.post("/api/entries")
    def add_entry():
        entry, problem = _valid_entry(request.get_json(silent=True))
        if problem:
            return jsonify(error=problem), 400
        try:
            entry_id, node = store.add_entry(**entry)
        except db.Maintenance:
            return refused()
        except db.Unavailable as exc:
            return jsonify(error="database unavailable, entry not saved", detail=str(exc)), 503
        # Only reached after the COMMIT returned: the id is durable (and, in synchronous
        # mode, on a replica too).
        return jsonify(id=entry_id, node=node), 201

    @app.get("/api/entries/count")
    def count_entries():
        try:
            return jsonify(count=store.count_entries()), 200
        except db.Unavailable as exc:
            return jsonify(error="database unavailable", detail=str(exc)), 503

    return app


def _read_release(path):
    """What roles/app recorded about the running release (id, version, commit); unknown
    when the app runs outside a release folder (tests, a developer's checkout)."""
    try:
        with open(path, encoding="utf-8") as record:
            release = json.load(record)
    except (OSError, ValueError):
        return {"id": "unknown", "version": "unknown"}
    return release if isinstance(release, dict) else {"id": "unknown", "version": "unknown"}


def _retry_after(path, default=30):
    try:
        with open(path, encoding="utf-8") as flag:
            value = int(flag.read().strip() or default)
    except (OSError, ValueError):
        return default
    return value if 0 < value <= 3600 else default


def _valid_entry(body):
    if not isinstance(body, dict):
        return None, "expected a JSON object"
    machine, member, minutes = body.get("machine"), body.get("member"), body.get("minutes", 1)
    for name, value in (("machine", machine), ("member", member)):
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            return None, "%s: a non-empty string of at most %d characters" % (name, MAX_TEXT)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= 24 * 60:
        return None, "minutes: an integer from 1 to 1440"
    return {"machine": machine.strip(), "member": member.strip(), "minutes": minutes}, None
