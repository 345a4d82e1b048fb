#!/usr/bin/env python3
"""Hand-written starting inputs for the fuzz targets (fuzz/corpus/*/seed-*).

The harnesses read their input with `hotpair_fuzz::Input`: `below(n)` is
one byte (two, big-endian, when n > 256) modulo n; `bytes(max)` is a
`below(max + 1)` length, then that many bytes. Run from fuzz/:
    python3 seeds/make_seeds.py
"""
import os
import struct

def u8(v): return bytes([v & 0xff])
def u16(v): return struct.pack(">H", v & 0xffff)
def u32(v): return struct.pack(">I", v & 0xffffffff)
def u64(v): return struct.pack(">Q", v)

def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

# ---- http_conn ---------------------------------------------------------
def limits(header=4000, body=4000, pipelined=2, t=(5000, 20000, 5000)):
    return u16(header) + u16(body) + u8(pipelined) + u16(t[0]) + u16(t[1]) + u16(t[2])

def recv(b):  # op 0, bytes(96) in pieces of at most 96
    out = b""
    for i in range(0, len(b), 96):
        p = b[i:i + 96]
        out += u8(0) + u8(len(p)) + p
    return out

ANSWER = u8(5) + u8(0) + u8(0) + u16(0) + u8(1) + u8(20)  # first awaiting, 200, no fields, 20 bytes
FLUSH = u8(7) + u16(2999)
EOF_OP = u8(9)
def advance(ms): return u8(4) + u8(1) + u16(ms)

REQS = {
    "get": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "get-query": b"GET /static/a%20b.txt?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n",
    "head": b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "post-cl": b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "expect": b"PUT /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "http10": b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad": b"GET /../etc HTTP/1.1\r\nHost: a\r\n\r\n",
    "lead-crlf": b"\r\n\r\nDELETE /d HTTP/1.1\r\nHost: a\r\n\r\n",
}
for name, r in REQS.items():
    write("http_conn", "chaos-" + name, u8(0) + limits() + recv(r) + ANSWER + FLUSH + FLUSH + ANSWER + FLUSH + EOF_OP)
    write("http_conn", "units-" + name, u8(2) + limits() + recv(r) + ANSWER + FLUSH + FLUSH + ANSWER + FLUSH + FLUSH + EOF_OP)
    write("http_conn", "diff-" + name, u8(1 | (3 << 1)) + limits() + r)
write("http_conn", "slow-header", u8(0) + limits(t=(100, 200, 100)) + recv(b"GET / HT") + advance(500) + recv(b"TP/1.1\r\n\r\n") + FLUSH)
write("http_conn", "idle", u8(0) + limits(t=(100, 200, 100)) + recv(REQS["get"]) + ANSWER + FLUSH + advance(1000) + FLUSH)

# ---- wire --------------------------------------------------------------
def msg(ty, body, channel=0x0a000010, version=2):
    inner = u8(version) + u8(ty) + u32(channel) + body
    return u32(len(inner)) + inner

CONN = bytes([10, 0, 0, 7]) + u16(40123) + u32(0xdeadbeef)
MSGS = {
    "hello": msg(1, u8(2) + u8(6) + b"node-a" + u8(1) + u64(3)),
    "heartbeat": msg(2, u64(7)),
    "frame": msg(3, bytes(range(60))),
    "unit": msg(4, CONN + u64(0) + u64(1) + u8(1) + u64(80) + u8(0) + b"HTTP/1.1 200 OK\r\n\r\n"),
    "unit-ack": msg(5, CONN + u64(4)),
    "conn-gone": msg(6, CONN),
    "bad-version": msg(2, u64(7), version=1),
    "bad-type": msg(9, b""),
}
for name, m in MSGS.items():
    write("wire", name, u8(0) + m)
stream = b"".join(MSGS[k] for k in ["hello", "heartbeat", "unit", "unit-ack", "frame", "conn-gone"])
write("wire", "stream-bytewise", u8(0x55) + stream)
write("wire", "stream-mixed", u8(0xe4) + stream + MSGS["heartbeat"][:7])
write("wire", "too-long", u8(3) + u32(0x7fffffff) + b"xx")

# ---- engine ------------------------------------------------------------
def engine_cfg(role, maxc=4, gw=0, rx=1, tx=1, seed=7):
    return u8(role) + u8(maxc - 1) + u8(gw) + u8(rx) + u8(tx) + u8(seed)

def seg(c, flags_sel, seq_sel=1, ack_sel=1, win=0, opts=0, pay=0, path=0x80, extra=b""):
    # op 0: client_segment(c, flags, seq, ack, window, options, payload, src mac), path byte
    b = u8(0) + u8(c) + u8(flags_sel)
    if flags_sel == 0:      # SYN: new ISN?
        b += u8(seq_sel)
    else:
        b += u8(seq_sel) + (u8(0) if seq_sel % 4 else u32(0))[:0]
        if seq_sel % 4 != 0:
            b += u8(0)      # delta: 0
    if flags_sel in (1, 2, 3, 4, 6):
        b += u8(ack_sel) + u8(0)   # ack near server isn, delta 0
    b += u8(win) + u8(opts) + u8(pay) + extra + u8(1) + u8(path)
    return b

SYN, ACKF, PSHACK, FINACK = 0, 1, 3, 4
for role, name in ((0, "simplex"), (1, "primary"), (2, "owner")):
    hs = seg(0, SYN, seq_sel=1, opts=2) + seg(0, ACKF)
    data = seg(0, PSHACK, pay=2, extra=u8(40))
    fin = seg(0, FINACK)
    tick = u8(8) + u8(3)
    write("engine", name + "-handshake", engine_cfg(role) + hs + tick)
    write("engine", name + "-request", engine_cfg(role) + hs + data + tick + data + fin + tick)
write("engine", "owner-promote", engine_cfg(2) + seg(0, SYN, opts=2) + seg(0, ACKF) + seg(0, PSHACK, pay=2, extra=u8(10)) + u8(9) + u8(0) + u8(8) + u8(3))
write("engine", "primary-claim", engine_cfg(1) + seg(0, SYN, opts=2) + u8(9) + u8(1) + u8(8) + u8(1) + u16(150) + u8(7) + u8(1) + u8(8) + u8(1) + u16(400))
write("engine", "simplex-arp", engine_cfg(0) + u8(7) + u8(2) + u8(7) + u8(0))
write("engine", "raw", engine_cfg(0) + u8(5) + u8(20) + bytes(20) + u8(0))

# ---- replica -----------------------------------------------------------
def rcfg(mode, role=1, interval=9, name=1, mult=1, unacked=1000, fwd=4, conns=3):
    b = u8(mode)
    if mode % 2 == 0:
        b += u8(role)
    return b + u8(interval) + u8(name) + u8(mult) + u16(unacked) + u8(fwd - 1) + u8(conns - 1)

HELLO_FROM_OWNER = u8(2) + u8(0) + u8(0) + u8(1) + u8(1) + u64(0)   # op hostile, conn 0, Hello, version ok, role ok, epoch
LOG = u8(5) + u8(0) + u64(0) + u8(1) + u64(80) + u8(0) + u8(1) + u8(30)
ACK0 = u8(2) + u8(0) + u8(5) + u8(1) + u8(0)
write("replica", "alone-primary", rcfg(0, 1) + u8(0) + u8(10) + HELLO_FROM_OWNER + LOG + u8(10) + ACK0 + u8(11) + u8(0))
write("replica", "alone-owner", rcfg(0, 2) + u8(0) + u8(10) + u8(2) + u8(0) + u8(0) + u8(1) + u8(1) + u64(0)
      + u8(2) + u8(0) + u8(3) + u8(2) + u64(0) + u8(1) + u64(10) + u8(0) + u8(1) + u8(10) + u8(11) + u8(0) + u8(10))
write("replica", "alone-simplex", rcfg(0, 0) + LOG + LOG + u8(11) + u8(0) + u8(9) + u8(2) + u16(1000))
PAIR_UP = u8(0) + u8(2) + u8(7) + u8(4) + u8(7)
write("replica", "pair-basic", rcfg(1) + PAIR_UP + u8(6) + u8(1) + u64(0) + u8(1) + u64(80) + u8(0) + u8(1) + u8(30)
      + u8(2) + u8(7) + u8(11) + u8(0) + u8(4) + u8(7) + u8(10) + u8(0))
write("replica", "pair-frames", rcfg(1) + PAIR_UP + u8(7) + u8(1) + u8(20) + u8(7) + u8(1) + u8(21) + u8(2) + u8(7) + u8(10) + u8(0))
write("replica", "pair-cut", rcfg(1) + PAIR_UP + u8(6) + u8(1) + u64(0) + u8(1) + u64(80) + u8(0) + u8(1) + u8(30) + u8(1) + u8(10) + u8(0) + u8(0))
write("replica", "pair-timeout", rcfg(1) + PAIR_UP + u8(9) + u8(2) + u16(2000) + u8(10) + u8(0))
