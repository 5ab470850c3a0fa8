#!/usr/bin/python3
"""The lab's mail and webhook sinks: record what monitoring delivers, so tests can assert it.

  hastack_lab_sink.py smtp --listen ADDRESS --port PORT --dir DIR     one .eml file per mail
  hastack_lab_sink.py webhook --listen ADDRESS --port PORT --dir DIR  one .json file per POST

Files are named <unix time in ns>.<ext> and written by rename, so a reader never sees half
a message. Test and lab hosts only (roles/lab_sinks): nothing is forwarded anywhere.
"""

import argparse
import http.server
import os
import sys
import threading
import time


def store(directory, data, ext):
    name = "%d.%s" % (time.time_ns(), ext)
    tmp = os.path.join(directory, "." + name)
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, os.path.join(directory, name))
    return name


class MailHandler:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        header = "X-Lab-Rcpt-To: %s\r\nX-Lab-Mail-From: %s\r\n" % (", ".join(envelope.rcpt_tos), envelope.mail_from)
        store(self.directory, header.encode() + envelope.original_content, "eml")
        return "250 Message accepted for delivery"


def serve_smtp(args):
    from aiosmtpd.controller import Controller  # noqa: PLC0415 - only the smtp sink needs it

    controller = Controller(MailHandler(args.dir), hostname=args.listen, port=args.port)
    controller.start()
    threading.Event().wait()


def webhook_handler(directory):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            store(directory, self.rfile.read(length), "json")
            self.send_response(200)
            self.end_headers()

        def log_message(self, fmt, *args):
            pass

    return Handler


def serve_webhook(args):
    http.server.ThreadingHTTPServer((args.listen, args.port), webhook_handler(args.dir)).serve_forever()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("smtp", "webhook"):
        sub = commands.add_parser(name)
        sub.add_argument("--listen", required=True)
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--dir", required=True)
    args = parser.parse_args(argv[1:])
    os.makedirs(args.dir, exist_ok=True)
    {"smtp": serve_smtp, "webhook": serve_webhook}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
