#!/usr/bin/env python3
"""hotpair lab upstream application (written out by `hotpair lab up`).

A small HTTP/1.1 keep-alive server that stands in for the user's real
application behind the `upstream` handler. It runs inside each node namespace,
listening on 127.0.0.1:8080 by default.

  POST/PUT any path  -> 200, body = lowercase hex SHA-256 of the request body
                        (Content-Length or chunked request bodies, hashed as
                        they stream in)
  GET/HEAD ?size=N   -> 200, N deterministic bytes (byte k = (k*131+17) % 251)
  GET/HEAD otherwise -> 200, a short text naming the path

Every reply carries Content-Length, and echoes back the request's
X-Request-Id (the client's own), X-Hotpair-Request-Id (the replication id
hotpair adds) and X-Forwarded-For, each under its own name. Nothing is
written to stdout; the access log goes to --log.
"""

import argparse
import hashlib
import http.server
import os
import sys
import threading
import urllib.parse

CHUNK = 64 * 1024
MAX_SIZE = 64 * 1024 * 1024
# 251 * 256 bytes: a whole number of pattern periods, so chunks join seamlessly.
PATTERN_BLOCK = bytes((k * 131 + 17) % 251 for k in range(251)) * 256


# Request headers sent back as they came.
ECHOED = ("X-Request-Id", "X-Hotpair-Request-Id", "X-Forwarded-For")


class BadRequest(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hotpair-lab-upstream/1"
    # TCP_NODELAY, as real application servers set it: a reply is written
    # as head then body, and with Nagle the body waited for the ACK of the
    # head, which the proxy delays (40 ms per request on a kept-alive
    # connection).
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        self.server.log(
            "%s %s" % (self.address_string(), fmt % args)
        )

    # ---- replies -------------------------------------------------------

    def _start(self, code, length, content_type):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name in ECHOED:
            value = self.headers.get(name) if self.headers else None
            if value is not None:
                self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _reply(self, code, body, content_type="text/plain; charset=utf-8"):
        self._start(code, len(body), content_type)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fail(self, code, text):
        self.close_connection = True
        self._reply(code, (text + "\n").encode())

    # ---- GET / HEAD ----------------------------------------------------

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if "size" in query:
            try:
                size = int(query["size"][0])
            except ValueError:
                return self._fail(400, "size must be an integer")
            if size < 0 or size > MAX_SIZE:
                return self._fail(400, "size out of range 0..%d" % MAX_SIZE)
            self._start(200, size, "application/octet-stream")
            if self.command == "HEAD":
                return
            left = size
            while left > 0:
                n = min(left, len(PATTERN_BLOCK))
                self.wfile.write(PATTERN_BLOCK[:n])
                left -= n
            return
        self._reply(200, ("hotpair lab upstream: %s %s\n" % (self.command, url.path)).encode())

    do_HEAD = do_GET

    # ---- POST / PUT ----------------------------------------------------

    def _read_exact(self, n, digest):
        while n > 0:
            data = self.rfile.read(min(n, CHUNK))
            if not data:
                raise BadRequest("body ended early")
            digest.update(data)
            n -= len(data)

    def _read_line(self):
        line = self.rfile.readline(4096)
        if not line.endswith(b"\n"):
            raise BadRequest("bad chunked framing")
        return line

    def _read_chunked(self, digest):
        while True:
            line = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size < 0:
                raise BadRequest("bad chunk size")
            if size == 0:
                # trailer section, ends with an empty line
                while self._read_line() not in (b"\r\n", b"\n"):
                    pass
                return
            self._read_exact(size, digest)
            if self._read_line() not in (b"\r\n", b"\n"):
                raise BadRequest("chunk not followed by CRLF")

    def do_POST(self):
        digest = hashlib.sha256()
        te = self.headers.get("Transfer-Encoding")
        cl = self.headers.get("Content-Length")
        try:
            if te is not None:
                if te.strip().lower() != "chunked" or cl is not None:
                    raise BadRequest("unsupported Transfer-Encoding")
                self._read_chunked(digest)
            elif cl is not None:
                try:
                    length = int(cl)
                except ValueError:
                    raise BadRequest("bad Content-Length")
                if length < 0:
                    raise BadRequest("bad Content-Length")
                self._read_exact(length, digest)
        except BadRequest as e:
            return self._fail(400, str(e))
        self._reply(200, digest.hexdigest().encode())

    do_PUT = do_POST


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, handler, logfile):
        self._log = logfile
        self._log_lock = threading.Lock()
        super().__init__(addr, handler)

    def log(self, line):
        with self._log_lock:
            self._log.write(line + "\n")
            self._log.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--log", default=os.devnull, help="access log file")
    ap.add_argument("--ready", help="file created once the socket listens")
    args = ap.parse_args()

    logfile = open(args.log, "a", buffering=1)
    server = Server((args.bind, args.port), Handler, logfile)
    server.log("listening on %s:%d" % (args.bind, args.port))
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("%d\n" % os.getpid())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
