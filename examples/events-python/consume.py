#!/usr/bin/env python3
"""Print acmeq's certificate notifications: an example consumer in another language.

acmeq publishes every event on acmeq.events.<kind>.<namespace>.<name> as a core
NATS message (and keeps it in the JetStream stream ACMEQ_EVENTS). This script
speaks the NATS text protocol over a plain socket with the Python 3 standard
library only (INFO, CONNECT, SUB, MSG/HMSG, PING/PONG), subscribes to
acmeq.events.certificate.> and prints the Certificate events whose reason is
one of --reason (Issued by default; Failed and Revoked are the other
documented notifications). The payload's JSON Schema is
messages/schema/event.schema.json.

    python3 consume.py --server nats://127.0.0.1:4222
    python3 consume.py --reason Issued,Failed,Revoked --json

A core subscription sees events published while it is connected. A consumer
that must not miss one across its own restarts reads ACMEQ_EVENTS with a
durable JetStream consumer instead (any NATS client library can).
"""

import argparse
import json
import os
import socket
import ssl
import sys
import urllib.parse

SUBJECT = "acmeq.events.certificate.>"


class ProtocolError(Exception):
    pass


class Conn:
    """A minimal NATS client connection: enough to subscribe and receive."""

    def __init__(self, url, name, ca_file=None, timeout=10.0):
        u = urllib.parse.urlsplit(url if "://" in url else "nats://" + url)
        host, port = u.hostname or "127.0.0.1", u.port or 4222
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        info = self._line()
        if not info.startswith(b"INFO "):
            raise ProtocolError("expected INFO from the server, got %r" % info[:80])
        info = json.loads(info[5:])
        if u.scheme == "tls" or info.get("tls_required"):
            ctx = ssl.create_default_context(cafile=ca_file)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=host)
        opts = {"verbose": False, "pedantic": False, "lang": "python3", "version": "0.1.0",
                "protocol": 1, "headers": True, "name": name}
        if u.username and u.password is not None:
            opts["user"] = urllib.parse.unquote(u.username)
            opts["pass"] = urllib.parse.unquote(u.password)
        elif u.username:
            opts["auth_token"] = urllib.parse.unquote(u.username)
        self._send(b"CONNECT " + json.dumps(opts).encode() + b"\r\n")

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the NATS server closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]  # the payload ends with CRLF
        return data

    def subscribe(self, subject, sid=1):
        """SUB, then PING: the PONG (or -ERR) says the server accepted both."""
        self._send(("SUB %s %d\r\n" % (subject, sid)).encode())
        self._send(b"PING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise ProtocolError(line.decode(errors="replace"))
            if line == b"PING":
                self._send(b"PONG\r\n")

    def messages(self):
        """Yield (subject, payload) forever, answering the server's PINGs."""
        self.sock.settimeout(None)
        while True:
            line = self._line()
            if line.startswith(b"MSG "):
                parts = line.split()  # MSG <subject> <sid> [reply-to] <#bytes>
                yield parts[1].decode(), self._read(int(parts[-1]))
            elif line.startswith(b"HMSG "):
                parts = line.split()  # HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
                data = self._read(int(parts[-1]))
                yield parts[1].decode(), data[int(parts[-2]):]
            elif line == b"PING":
                self._send(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise ProtocolError(line.decode(errors="replace"))
            # +OK, PONG and INFO (cluster updates) need nothing.


def main():
    p = argparse.ArgumentParser(description="Print acmeq certificate notifications.")
    p.add_argument("--server", default=os.environ.get("ACMEQ_NATS_URL", "nats://127.0.0.1:4222"),
                   help="NATS URL, nats://[user:pass@]host:port (default: $ACMEQ_NATS_URL or %(default)s)")
    p.add_argument("--reason", default="Issued",
                   help="comma-separated reasons to print (default: %(default)s; 'all' prints every one)")
    p.add_argument("--json", action="store_true", help="print each event as its JSON")
    p.add_argument("--count", type=int, default=0, help="exit after printing this many events (default: never)")
    p.add_argument("--ca-file", help="CA bundle for a TLS server")
    args = p.parse_args()
    reasons = None if args.reason == "all" else set(args.reason.split(","))

    try:
        conn = Conn(args.server, "acmeq-events-python", args.ca_file)
        conn.subscribe(SUBJECT)
    except (OSError, ProtocolError, ValueError) as e:
        print("consume.py: cannot subscribe to %s at %s: %s" % (SUBJECT, args.server, e), file=sys.stderr)
        return 1
    print("consume.py: subscribed to %s at %s" % (SUBJECT, args.server), file=sys.stderr, flush=True)

    printed = 0
    try:
        for subject, payload in conn.messages():
            try:
                ev = json.loads(payload)
            except ValueError:
                print("consume.py: skipping a message on %s that is not JSON" % subject, file=sys.stderr)
                continue
            if reasons is not None and ev.get("reason") not in reasons:
                continue
            obj = ev.get("involvedObject", {})
            if args.json:
                print(json.dumps(ev, separators=(",", ":")), flush=True)
            else:
                print("%s %s %s/%s: %s (%s)" % (ev.get("lastTimestamp"), ev.get("reason"), obj.get("namespace"),
                                                obj.get("name"), ev.get("message"), ev.get("type")), flush=True)
            printed += 1
            if args.count and printed >= args.count:
                return 0
    except (OSError, ProtocolError) as e:
        print("consume.py: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
