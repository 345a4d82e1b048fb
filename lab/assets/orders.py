#!/usr/bin/env python3
"""hotpair reference application: orders on PostgreSQL, exactly once.

The example to copy for an application behind hotpair's `upstream` handler
(the contract it meets: docs/application.md). `hotpair lab up --app orders`
writes it out and runs it on every node, on 127.0.0.1:8080, against the
lab's PostgreSQL.

  POST /app/orders[?delay_ms=N]  body: any bytes, at most 64 KiB (else 413).
        Creates an order; 201 with JSON {"id", "request_id", "sha256",
        "bytes", "created_at"}. A request whose request id (the header named
        by --id-header) was already committed gets the SAME 201 JSON for the
        order it created, and creates nothing: the node that takes over from
        a dead primary may run a request again. (Such a reply also carries
        `X-Orders-Replay: 1`, for tests and logs; its body is the same.) Without the header every
        request is a new order. delay_ms (0..30000) waits AFTER the commit
        before answering (to widen the crash window in tests).
  GET  /app/orders/stats  200 {"orders": N, "duplicates_refused": M,
        "with_request_id": K}; M counts the requests answered from an
        existing row.
  GET  /app/health        200 when the database answers, else 503.
  Other /app/ paths: 404; other methods: 405.

Every reply carries Content-Length (HTTP/1.1 keep-alive). Bad input is a 4xx;
a database that is down or hangs is a 503 within a bounded time (at most
15 s per database operation, 3 s for /app/health), never a hang.

Needs Python 3 and psycopg2 (Debian: python3-psycopg2). `--init-schema`
creates the table (idempotent) and exits.
"""

import argparse
import datetime
import hashlib
import http.server
import json
import os
import select
import sys
import threading
import time
import urllib.parse

import psycopg2
import psycopg2.extensions

MAX_BODY = 64 * 1024
MAX_DELAY_MS = 30_000
MAX_REQUEST_ID = 256
# The longest the app waits on the database for one operation (connecting,
# a statement, the commit): a server that hangs (stopped, overloaded) costs a
# request this much, then a 503. /app/health waits less.
DB_WAIT = 15.0
HEALTH_WAIT = 3.0

# The one table. `request_id` is UNIQUE: the database, not the application,
# decides which of two concurrent runs of one request creates the order.
# NULLs never conflict, so requests without an id are never deduplicated.
SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id          bigserial   PRIMARY KEY,
    request_id  text        UNIQUE,
    body        bytea       NOT NULL,
    body_sha256 text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    replays     integer     NOT NULL DEFAULT 0
)
"""

COLUMNS = "id, request_id, body_sha256, octet_length(body), created_at"

# Insert-or-return, in ONE transaction (READ COMMITTED, the default):
# 1. INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING: a new id, or no
#    row when the id is taken. Should another transaction be inserting the
#    same id right now (the dead primary's application, still finishing), the
#    INSERT waits for it: once it commits this is a conflict, should it roll
#    back this insert goes ahead. Never two rows, never a unique-violation.
# 2. On conflict, UPDATE … RETURNING the existing row (a statement of its
#    own sees every commit before it) and count the replay. The body must
#    be the same: the same id with another body is a client's bug (409).
INSERT_NEW = (
    "INSERT INTO orders (request_id, body, body_sha256) VALUES (%s, %s, %s) "
    "ON CONFLICT (request_id) DO NOTHING RETURNING " + COLUMNS
)
RETURN_EXISTING = (
    "UPDATE orders SET replays = replays + 1 "
    "WHERE request_id = %s AND body_sha256 = %s RETURNING " + COLUMNS
)


# Every database wait goes through this: psycopg2 runs libpq non-blocking
# and calls it to wait for the socket. The server's own statement_timeout
# does not help when the server is not running (SIGSTOP, a hung host), and
# the kernel keeps ACKing, so only a client-side bound catches that.
_wait = threading.local()


def bounded_wait(conn):
    limit = getattr(_wait, "limit", DB_WAIT)
    deadline = time.monotonic() + limit
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise psycopg2.OperationalError("no answer from the database within %.0f s" % limit)
        fd = conn.fileno()
        if state == psycopg2.extensions.POLL_READ:
            select.select([fd], [], [], left)
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [fd], [], left)
        else:
            raise psycopg2.OperationalError("bad poll state %r" % state)


psycopg2.extensions.set_wait_callback(bounded_wait)


class DbUnavailable(Exception):
    """The database cannot be reached or did not answer in time."""


class IdReused(Exception):
    """A request id already committed with another body."""


def connect(dsn):
    # Every wait is bounded by bounded_wait; the server also cuts a statement
    # or a lock wait at 10 s, and TCP keepalives and the user timeout drop a
    # connection whose peer vanished, so a dead server is noticed on an idle
    # pooled connection too.
    #
    # idle_in_transaction_session_timeout is for the other side: an
    # application whose host died between its INSERT and its COMMIT leaves
    # the row's request id locked, and the peer running the same request
    # again waits on it (INSERT_NEW). The server ends such a session after
    # 5 s (rolling it back: that order was never answered), well inside the
    # 10 s lock_timeout, and the peer's insert goes ahead.
    return psycopg2.connect(
        dsn,
        connect_timeout=3,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        tcp_user_timeout=10_000,
        options="-c statement_timeout=10000 -c lock_timeout=10000 "
                "-c idle_in_transaction_session_timeout=5000",
        application_name="hotpair-orders",
    )


class Pool:
    """At most `size` database connections, shared by the request threads."""

    def __init__(self, dsn, size, wait):
        self.dsn = dsn
        self.size = size
        self.wait = wait
        self.idle = []
        self.open = 0
        self.cond = threading.Condition()

    def get(self):
        deadline = time.monotonic() + self.wait
        with self.cond:
            while not self.idle and self.open >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DbUnavailable("all %d database connections busy" % self.size)
                self.cond.wait(left)
            if self.idle:
                return self.idle.pop()
            self.open += 1
        try:
            return connect(self.dsn)
        except psycopg2.Error as e:
            self._gone()
            raise DbUnavailable(str(e).strip()) from e

    def put(self, conn, broken):
        if broken or conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass
            self._gone()
            return
        with self.cond:
            self.idle.append(conn)
            self.cond.notify()

    def _gone(self):
        with self.cond:
            self.open -= 1
            self.cond.notify()

    def run(self, work):
        """work(conn) inside a transaction; DbUnavailable on database trouble."""
        conn = self.get()
        broken = True
        try:
            with conn:  # commit on success, roll back on an exception
                result = work(conn)
            broken = False
            return result
        except IdReused:
            broken = False
            raise
        except psycopg2.Error as e:
            # An SQL error here is the database failing (timeouts, shutdown,
            # a lost connection): the connection is dropped, not reused.
            raise DbUnavailable(str(e).strip()) from e
        finally:
            self.put(conn, broken)


def order_json(row):
    oid, request_id, sha, size, created = row
    return {
        "id": oid,
        "request_id": request_id,
        "sha256": sha,
        "bytes": size,
        "created_at": created.astimezone(datetime.timezone.utc).isoformat(),
    }


def create_order(conn, request_id, body):
    """(order row, whether it existed) — see INSERT_NEW and RETURN_EXISTING."""
    sha = hashlib.sha256(body).hexdigest()
    with conn.cursor() as cur:
        cur.execute(INSERT_NEW, (request_id, psycopg2.Binary(body), sha))
        row = cur.fetchone()
        if row is not None:
            return row, False
        cur.execute(RETURN_EXISTING, (request_id, sha))
        row = cur.fetchone()
        if row is None:
            raise IdReused(request_id)
        return row, True


def stats(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), coalesce(sum(replays), 0), count(request_id) FROM orders"
        )
        orders, replays, with_id = cur.fetchone()
    return {"orders": orders, "duplicates_refused": int(replays), "with_request_id": with_id}


def ping(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0] == 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hotpair-orders/1"
    # An idle keep-alive connection from the node is closed after this long
    # (the node opens another); bounds the threads a silent client can hold.
    timeout = 120

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        self.server.log("%s %s" % (self.address_string(), fmt % args))

    # ---- replies -------------------------------------------------------

    def _reply(self, code, obj, extra=()):
        body = (json.dumps(obj, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        rid = self._request_id()
        if rid is not None:
            self.send_header(self.server.id_header, rid)
        for k, v in extra:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code, text, close=False, extra=()):
        if close:
            self.close_connection = True
        self._reply(code, {"error": text}, extra)

    def _request_id(self):
        return self.headers.get(self.server.id_header) if self.headers else None

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        return url.path, urllib.parse.parse_qs(url.query, keep_blank_values=True)

    def _db(self, work):
        try:
            return self.server.pool.run(work)
        except DbUnavailable as e:
            self.server.log("database unavailable: %s" % e)
            self._error(503, "database unavailable", extra=[("Retry-After", "1")])
            return None

    # ---- GET / HEAD ----------------------------------------------------

    def do_GET(self):
        path, _ = self._route()
        if path == "/app/health":
            _wait.limit = HEALTH_WAIT
            try:
                if self._db(ping):
                    self._reply(200, {"status": "ok"})
            finally:
                _wait.limit = DB_WAIT
        elif path == "/app/orders/stats":
            result = self._db(stats)
            if result is not None:
                self._reply(200, result)
        elif path == "/app/orders":
            self._error(405, "POST to create an order", extra=[("Allow", "POST")])
        else:
            self._error(404, "no such path: %s" % path)

    do_HEAD = do_GET

    # ---- POST ----------------------------------------------------------

    def _body(self):
        """The request body, or None after replying with an error."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._error(411, "send Content-Length (no Transfer-Encoding)", close=True)
            return None
        cl = self.headers.get("Content-Length", "0")
        try:
            length = int(cl)
        except ValueError:
            length = -1
        if length < 0:
            self._error(400, "bad Content-Length", close=True)
            return None
        if length > MAX_BODY:
            # The body is not read: the connection cannot be reused.
            self._error(413, "body over %d bytes" % MAX_BODY, close=True)
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def do_POST(self):
        path, query = self._route()
        if path in ("/app/orders/stats", "/app/health"):
            return self._error(405, "GET only", close=True, extra=[("Allow", "GET, HEAD")])
        if path != "/app/orders":
            return self._error(404, "no such path: %s" % path, close=True)
        delay_ms = 0
        if "delay_ms" in query:
            try:
                delay_ms = int(query["delay_ms"][0])
            except ValueError:
                delay_ms = -1
            if not 0 <= delay_ms <= MAX_DELAY_MS:
                return self._error(400, "delay_ms must be 0..%d" % MAX_DELAY_MS, close=True)
        rid = self._request_id()
        if rid is not None and not 0 < len(rid) <= MAX_REQUEST_ID:
            return self._error(400, "request id must be 1..%d characters" % MAX_REQUEST_ID,
                               close=True)
        body = self._body()
        if body is None:
            return
        try:
            result = self._db(lambda conn: create_order(conn, rid, body))
        except IdReused:
            return self._error(409, "request id %s was used with another body" % rid)
        if result is None:
            return
        row, existed = result
        # Answered AFTER the commit: a crash in this window is what the
        # request id is for (the peer runs the request again).
        if delay_ms:
            time.sleep(delay_ms / 1000)
        self._reply(201, order_json(row),
                    extra=[("X-Orders-Replay", "1")] if existed else ())

    def _method_not_allowed(self):
        path, _ = self._route()
        if path in ("/app/orders", "/app/orders/stats", "/app/health"):
            allow = "POST" if path == "/app/orders" else "GET, HEAD"
            return self._error(405, "method not allowed", close=True, extra=[("Allow", allow)])
        return self._error(404, "no such path: %s" % path, close=True)

    def __getattr__(self, name):
        # Any other method (the base class would answer 501): a 405 on our
        # paths, a 404 elsewhere — bad input is the client's, a 4xx.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, logfile, pool, id_header):
        self._log = logfile
        self._log_lock = threading.Lock()
        self.pool = pool
        self.id_header = id_header
        super().__init__(addr, Handler)

    def log(self, line):
        with self._log_lock:
            self._log.write("%s %s\n" % (time.strftime("%H:%M:%S"), line))
            self._log.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--dsn", required=True,
                    help="libpq connection string, e.g. 'host=10.77.0.200 dbname=orders user=orders'")
    ap.add_argument("--id-header", default="X-Hotpair-Request-Id",
                    help="the header carrying the request id (hotpair's upstream handler sets it)")
    ap.add_argument("--pool-size", type=int, default=8, help="database connections at most")
    ap.add_argument("--log", default=os.devnull, help="access and error log file")
    ap.add_argument("--ready", help="file created once the socket listens")
    ap.add_argument("--init-schema", action="store_true",
                    help="create the table (if missing) and exit")
    args = ap.parse_args()

    if args.init_schema:
        try:
            conn = connect(args.dsn)
            with conn:
                with conn.cursor() as cur:
                    cur.execute(SCHEMA)
            conn.close()
        except psycopg2.Error as e:
            print("cannot create the schema: %s" % str(e).strip(), file=sys.stderr)
            return 1
        return 0

    if not 1 <= args.pool_size <= 256:
        ap.error("--pool-size must be 1..256")
    logfile = open(args.log, "a", buffering=1)
    # Waiting for a pooled connection is bounded like the rest.
    pool = Pool(args.dsn, args.pool_size, wait=5.0)
    server = Server((args.bind, args.port), logfile, pool, args.id_header)
    server.log("listening on %s:%d, request id from %s" % (args.bind, args.port, args.id_header))
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
