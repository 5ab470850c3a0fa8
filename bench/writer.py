#!/usr/bin/env python3
"""Write through the app VIP the way users do, and record every acknowledged entry.

    writer.py BASE_URL OUTFILE SECONDS

POSTs one entry after another to BASE_URL/api/entries (2 s timeout each) for SECONDS,
or until OUTFILE.stop exists. Appends to OUTFILE one line per attempt:
    ok <unix time> <id> <node>   the app answered 201: the entry is committed (on node)
    err <unix time> <why>   not acknowledged (it may or may not have been committed)
Standard library only, so it runs on a bare client host.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request


def post(url):
    body = json.dumps({"machine": "drill", "member": "writer", "minutes": 1}).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator's own URL
        url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - the operator's own URL
        if response.status != 201:
            raise OSError("HTTP %d" % response.status)
        answer = json.load(response)
        return answer["id"], answer.get("node")


def main(argv):
    base, outfile, seconds = argv[1], argv[2], float(argv[3])
    url = base.rstrip("/") + "/api/entries"
    deadline = time.monotonic() + seconds
    with open(outfile, "a", encoding="utf-8") as out:
        while time.monotonic() < deadline and not os.path.exists(outfile + ".stop"):
            try:
                entry_id, node = post(url)
                out.write("ok %.3f %d %s\n" % (time.time(), entry_id, node))
            except (OSError, ValueError, KeyError) as exc:
                reason = exc.code if isinstance(exc, urllib.error.HTTPError) else exc
                out.write("err %.3f %s\n" % (time.time(), str(reason).replace("\n", " ")[:200]))
                time.sleep(0.05)
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
