#!/usr/bin/python3
"""nbd_malformed.py SOCKET - malformed and hostile clients against nbd_testserver.

Expects the server of nbd_malformed.sh: vol0 (4 MiB; 0x11 in [0, 1M), 0x22 in
[2M, 3M), zeros elsewhere) and its snapshot vol0@s1.  Each case checks the
server's answer (an error reply, or a closed connection when the protocol
leaves no other way), then that the server is still up and a well-behaved
client reads correct data.  Standard library only.
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbd_raw as n  # noqa: E402

SOCK = sys.argv[1]
SIZE = 4 << 20
M = 1 << 20
EXPECTED = b"\x11" * M + bytes(M) + b"\x22" * M + bytes(M)
cases = 0
START = time.monotonic()


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def alive(what):
    """The server answers, and both exports read exactly what they should."""
    global cases
    for name in ("vol0", "vol0@s1"):
        for structured in (False, True):
            c = n.Client(SOCK)
            c.connect_export(name, structured=structured)
            check(c.size == SIZE, "%s: size %r after %s" % (name, c.size, what))
            data = b""
            for off in range(0, SIZE, M):
                err, _, d = c.read(off, M)
                check(err == 0, "%s: read error %d after %s" % (name, err, what))
                data += d
            check(data == EXPECTED, "%s: data changed after %s" % (name, what))
            c.disconnect()
    cases += 1
    print("ok: %s (%.1f s)" % (what, time.monotonic() - START), flush=True)


def closed(c, what):
    check(n.is_closed(c.sock), "%s: the connection should be closed" % what)
    c.close()


def opt_error(c, opt, data=b"", length=None):
    c.send_option(opt, data, length)
    reps = c.option_replies()
    return reps[-1][0]


# --- handshake -----------------------------------------------------------------

def handshake_cases():
    # unknown client flags: the spec says drop the connection
    c = n.Client(SOCK)
    c.greet(cflags=0x80)
    closed(c, "unknown client flags")
    alive("unknown client flags")

    # bad option magic
    c = n.Client(SOCK)
    c.greet()
    c.sock.sendall(struct.pack(">QII", 0x1122334455667788, n.OPT_GO, 0))
    closed(c, "bad option magic")
    alive("bad option magic")

    # an option length that lies big
    c = n.Client(SOCK)
    c.greet()
    c.send_option(n.OPT_GO, b"", length=0xFFFFFFFF)
    closed(c, "huge option length")
    alive("huge option length")

    # an option length longer than the data, then the client stops sending
    c = n.Client(SOCK)
    c.greet()
    c.send_option(n.OPT_INFO, b"\x00\x00\x00\x04vol0", length=1000)
    alive("option longer than its data, client still connected")
    c.sock.shutdown(socket.SHUT_WR)
    closed(c, "option longer than its data")
    alive("option longer than its data")

    # unknown options: NBD_REP_ERR_UNSUP; STARTTLS where no TLS is offered:
    # NBD_REP_ERR_POLICY; and the next option works
    c = n.Client(SOCK)
    c.greet()
    check(opt_error(c, 0x1234, b"junk") == n.REP_ERR_UNSUP, "unknown option not UNSUP")
    check(opt_error(c, 0x7FFFFFFF) == n.REP_ERR_UNSUP, "unknown option not UNSUP")
    check(opt_error(c, n.OPT_STARTTLS) == n.REP_ERR_POLICY, "STARTTLS without TLS not POLICY")
    check(opt_error(c, n.OPT_STARTTLS, b"x") == n.REP_ERR_INVALID, "STARTTLS with data")
    # syntactically bad options: NBD_REP_ERR_INVALID, connection still fine
    check(opt_error(c, n.OPT_LIST, b"x") == n.REP_ERR_INVALID, "LIST with data")
    check(opt_error(c, n.OPT_STRUCTURED_REPLY, b"x") == n.REP_ERR_INVALID, "SR with data")
    check(opt_error(c, n.OPT_GO, struct.pack(">I", 100) + b"vol0") == n.REP_ERR_INVALID,
          "GO name length past the option")
    check(opt_error(c, n.OPT_GO, struct.pack(">I", 4) + b"vol0" + struct.pack(">H", 5))
          == n.REP_ERR_INVALID, "GO info count past the option")
    check(opt_error(c, n.OPT_GO, b"\x00\x00") == n.REP_ERR_INVALID, "GO too short")
    meta = struct.pack(">I", 4) + b"vol0" + struct.pack(">I", 1) + b"\x00\x00\x00\x0fbase:"
    check(opt_error(c, n.OPT_SET_META_CONTEXT, meta) == n.REP_ERR_INVALID,
          "SET_META_CONTEXT before structured replies")
    # unknown names
    for name in (b"nope", b"vol0@nope", b"", b"vol0\x00x", b"x" * 5000):
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        rtype = opt_error(c, n.OPT_INFO, data)
        check(rtype in (n.REP_ERR_UNKNOWN, n.REP_ERR_INVALID),
              "INFO %r gave %x" % (name[:20], rtype))
    c.send_option(n.OPT_GO, struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0))
    rtype, msg = c.option_replies()[-1]
    check(rtype == n.REP_ERR_UNKNOWN and msg, "GO of an unknown name: %x %r" % (rtype, msg))
    # the list, with descriptions
    c.send_option(n.OPT_LIST)
    reps = c.option_replies()
    check(reps[-1][0] == n.REP_ACK, "LIST failed")
    names = set()
    for rtype, d in reps[:-1]:
        nl = struct.unpack(">I", d[:4])[0]
        names.add(d[4:4 + nl].decode())
        check(len(d) > 4 + nl, "no description for %r" % d[4:4 + nl])
    check(names == {"vol0", "vol0@s1"}, "LIST gave %r" % names)
    # and after all of that, GO still works
    c.structured_reply()
    # queries: base: lists base:allocation; hotsnap:changed only on snapshots
    def lst(name, queries):
        data = struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(queries))
        for q in queries:
            data += struct.pack(">I", len(q)) + q.encode()
        c.send_option(n.OPT_LIST_META_CONTEXT, data)
        reps = c.option_replies()
        check(reps[-1][0] == n.REP_ACK, "LIST_META_CONTEXT failed")
        return sorted(d[4:].decode() for t, d in reps[:-1])
    check(lst("vol0", []) == ["base:allocation"], "volume contexts")
    check(lst("vol0@s1", []) == ["base:allocation", "hotsnap:changed"], "snapshot contexts")
    check(lst("vol0@s1", ["hotsnap:"]) == ["hotsnap:changed"], "hotsnap: wildcard")
    check(lst("vol0@s1", ["base:"]) == ["base:allocation"], "base: wildcard")
    check(lst("vol0", ["hotsnap:changed", "x-foo:bar", "nocolon"]) == [], "odd queries")
    bad = struct.pack(">I", 4) + b"vol0" + struct.pack(">I", 3) + struct.pack(">I", 99) + b"ab"
    check(opt_error(c, n.OPT_LIST_META_CONTEXT, bad) == n.REP_ERR_INVALID, "query past end")
    rtype, _ = c.go("vol0")
    check(rtype == n.REP_ACK, "GO after errors")
    check(c.read(0, 4096)[2] == b"\x11" * 4096, "read after errors")
    c.disconnect()

    # NBD_OPT_EXPORT_NAME with an unknown name: the server must hang up
    c = n.Client(SOCK)
    c.greet()
    c.send_option(n.OPT_EXPORT_NAME, b"nope")
    closed(c, "EXPORT_NAME of an unknown name")
    # ... and with a known one it answers size and flags (no zeroes: negotiated)
    c = n.Client(SOCK)
    c.greet()
    c.send_option(n.OPT_EXPORT_NAME, b"vol0@s1")
    size, tflags = struct.unpack(">QH", n.recv_exact(c.sock, 10))
    check(size == SIZE and tflags & n.FLAG_READ_ONLY, "EXPORT_NAME reply")
    c.structured = False
    check(c.read(2 * M, 512)[2] == b"\x22" * 512, "read after EXPORT_NAME")
    c.disconnect()

    # ABORT gets an ACK and the connection ends
    c = n.Client(SOCK)
    c.greet()
    c.send_option(n.OPT_ABORT)
    check(c.option_replies()[-1][0] == n.REP_ACK, "ABORT not acked")
    closed(c, "ABORT")

    # disconnect in the middle of the greeting and of an option header
    c = n.Client(SOCK)
    n.recv_exact(c.sock, 18)
    c.sock.sendall(b"\x00\x00")
    c.close()
    c = n.Client(SOCK)
    c.greet()
    c.sock.sendall(struct.pack(">Q", n.IHAVEOPT) + b"\x00\x00")
    c.close()
    alive("hang-ups during the handshake")


# --- transmission ----------------------------------------------------------------

def transmission_cases():
    for structured in (False, True):
        c = n.Client(SOCK)
        c.connect_export("vol0", structured=structured)
        tag = " (structured)" if structured else " (simple)"
        # oversized lengths
        # (expecting errors, take no data: a data chunk would fail reply())
        c.send_request(n.CMD_READ, 0, 64 << 20)
        check(c.reply()[0] == n.EINVAL, "64 MiB read" + tag)
        c.send_request(n.CMD_READ, 0, 0xFFFFFFFF)
        check(c.reply()[0] == n.EINVAL, "4 GiB read" + tag)
        c.send_request(n.CMD_WRITE, 0, (32 << 20) + 512, data=b"\xee" * ((32 << 20) + 512))
        check(c.reply()[0] == n.EINVAL, "write longer than max_block" + tag)
        # past the end, and offset + length overflowing 64 bits
        check(c.read(SIZE, 512)[0] == n.EINVAL, "read at the end" + tag)
        check(c.read(SIZE - 512, 1024)[0] == n.EINVAL, "read across the end" + tag)
        check(c.read(2**64 - 512, 1024)[0] == n.EINVAL, "offset+length overflow" + tag)
        check(c.read(2**63, 512)[0] == n.EINVAL, "offset 2^63" + tag)
        check(c.write(SIZE, b"\xee" * 512) == n.EINVAL, "write at the end" + tag)
        check(c.write(2**64 - 256, b"\xee" * 512) == n.EINVAL, "write overflow" + tag)
        check(c.command(n.CMD_TRIM, 2**64 - 512, 1024) == n.EINVAL, "trim overflow" + tag)
        check(c.command(n.CMD_WRITE_ZEROES, SIZE - 512, 4096) == n.EINVAL,
              "zero across the end" + tag)
        check(c.command(n.CMD_CACHE, 2**64 - 1, 2) == n.EINVAL, "cache overflow" + tag)
        # unknown commands and flags
        for cmd in (8, 9, 99, 0xFFFF):
            check(c.command(cmd, 0, 512) == n.EINVAL, "command %d" % cmd + tag)
        check(c.read(0, 512, flags=0x8000)[0] == n.EINVAL, "unknown read flag" + tag)
        check(c.read(0, 512, flags=n.FLAG_REQ_ONE)[0] == n.EINVAL, "REQ_ONE on read" + tag)
        check(c.write(0, b"\xee" * 512, flags=n.FLAG_NO_HOLE) == n.EINVAL,
              "NO_HOLE on write" + tag)
        check(c.command(n.CMD_TRIM, 0, 512, flags=n.FLAG_FAST_ZERO) == n.EINVAL,
              "FAST_ZERO on trim" + tag)
        if not structured:
            check(c.read(0, 512, flags=n.FLAG_DF)[0] == n.EINVAL, "DF without structured")
        check(c.command(n.CMD_BLOCK_STATUS, 0, 512) == n.EINVAL, "block status, no context")
        # still in sync after all of it: reads are right, cookies echoed
        cookie = c.send_request(n.CMD_READ, 2 * M, 4096, cookie=0xFEEDFACECAFEBEEF)
        err, got, data = c.reply(2 * M, 4096)
        check(err == 0 and got == cookie and data == b"\x22" * 4096, "read after errors" + tag)
        c.disconnect()
        alive("bad requests" + tag)

    # zero-length requests are harmless
    c = n.Client(SOCK)
    c.connect_export("vol0", structured=True)
    check(c.read(0, 0)[0] == 0 and c.write(0, b"") == 0, "zero-length read/write")
    check(c.command(n.CMD_TRIM, 0, 0) == 0, "zero-length trim")
    c.disconnect()

    # FAST_ZERO: refused fast (ENOTSUP, nothing changed) over data; fine over
    # a hole of the sparse volume
    c = n.Client(SOCK)
    c.connect_export("vol0", structured=True)
    check(c.command(n.CMD_WRITE_ZEROES, 0, 65536, n.FLAG_FAST_ZERO) == n.ENOTSUP,
          "fast zero over data")
    check(c.command(n.CMD_WRITE_ZEROES, 3 * M, 65536, n.FLAG_FAST_ZERO) == 0,
          "fast zero over a hole")
    c.disconnect()
    alive("fast zero")

    # a WRITE longer than max_block and longer than we will skip: hang up
    c = n.Client(SOCK)
    c.connect_export("vol0")
    c.send_request(n.CMD_WRITE, 0, 0xFFFFFFFF, data=b"\xee" * 4096)
    closed(c, "4 GiB write payload")
    alive("4 GiB write payload")

    # a write header, part of the payload, then the client disconnects
    c = n.Client(SOCK)
    c.connect_export("vol0")
    c.send_request(n.CMD_WRITE, 0, 65536, data=b"\xee" * 1000)
    c.close()
    alive("write without its payload")

    # disconnect in the middle of a request header
    c = n.Client(SOCK)
    c.connect_export("vol0")
    c.sock.sendall(struct.pack(">IHH", n.REQUEST_MAGIC, 0, n.CMD_READ))
    c.close()
    alive("half a request header")

    # a bad request magic: no way to resync, the server hangs up
    c = n.Client(SOCK)
    c.connect_export("vol0")
    c.sock.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, 0, 1, 0, 512))
    closed(c, "bad request magic")
    alive("bad request magic")

    # clients that connect and never speak, or stop mid-request, stay stuck
    # alone: others keep working
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(SOCK)
    stuck = n.Client(SOCK)
    stuck.connect_export("vol0")
    stuck.send_request(n.CMD_WRITE, 0, M, data=b"\xee" * 4096)
    flood = n.Client(SOCK)
    flood.connect_export("vol0@s1")
    # pipelined reads it never reads replies to: the server's bounded queue
    # and a full socket buffer stop this client, nobody else
    try:
        flood.sock.settimeout(1)
        for i in range(400):
            flood.send_request(n.CMD_READ, 0, M)
    except socket.timeout:
        pass  # the server stopped reading from us: exactly the point
    alive("a silent client, a stuck write and a flooding reader")
    silent.close()
    stuck.close()
    flood.close()
    alive("silent, stuck and flooding clients gone")

    # many requests in flight, answered (maybe out of order) each exactly once
    c = n.Client(SOCK)
    c.connect_export("vol0", structured=True)
    want = {}
    for i in range(100):
        off = (i * 40960) % (SIZE - 65536)
        want[c.send_request(n.CMD_READ, off, 65536)] = off
    seen = set()
    whole = bytearray(SIZE)  # chunks of different replies may interleave
    for _ in range(100):
        err, cookie, _ = c.reply(0, SIZE, whole)
        check(err == 0 and cookie in want and cookie not in seen, "pipelined reply")
        seen.add(cookie)
    for off in want.values():
        check(whole[off:off + 65536] == EXPECTED[off:off + 65536],
              "pipelined data at %d: %r" % (off, bytes(whole[off:off + 16])))
    # DISC with requests outstanding: they are answered before the close
    for i in range(8):
        c.send_request(n.CMD_READ, i * 4096, 4096)
    c.send_request(n.CMD_DISC)
    for i in range(8):
        check(c.reply(0, SIZE)[0] == 0, "reply after DISC")
    closed(c, "DISC")
    alive("pipelined requests")

    # block status: REQ_ONE gives one extent no longer than asked; both contexts
    c = n.Client(SOCK)
    c.greet()
    c.structured_reply()
    ids = c.set_meta("vol0@s1", ["base:allocation", "hotsnap:changed"])
    check(set(ids) == {"base:allocation", "hotsnap:changed"}, "SET_META_CONTEXT %r" % ids)
    rtype, _ = c.go("vol0@s1")
    check(rtype == n.REP_ACK, "GO")
    c.send_request(n.CMD_BLOCK_STATUS, 0, 1000, n.FLAG_REQ_ONE)
    err, _, ext = c.reply()
    check(err == 0 and set(ext) == set(ids.values()), "block status contexts %r" % ext)
    for ctx, lst in ext.items():
        check(len(lst) == 1 and 0 < lst[0][0] <= 1000, "REQ_ONE gave %r" % lst)
    c.send_request(n.CMD_BLOCK_STATUS, 0, SIZE)
    err, _, ext = c.reply()
    check(sum(ln for ln, fl in ext[ids["base:allocation"]]) == SIZE, "whole map")
    check(c.command(n.CMD_BLOCK_STATUS, SIZE, 512) == n.EINVAL, "block status past end")
    check(c.command(n.CMD_BLOCK_STATUS, 0, 0) == n.EINVAL, "block status of nothing")
    # DF: one data chunk
    c.send_request(n.CMD_READ, 0, 2 * M, n.FLAG_DF)
    err, _, data = c.reply(0, 2 * M)
    check(err == 0 and data == EXPECTED[:2 * M], "DF read")
    c.disconnect()

    # contexts chosen for another export do not carry over to GO
    c = n.Client(SOCK)
    c.greet()
    c.structured_reply()
    c.set_meta("vol0@s1", ["base:allocation"])
    c.go("vol0")
    check(c.command(n.CMD_BLOCK_STATUS, 0, 512) == n.EINVAL, "contexts of another export")
    c.disconnect()
    alive("block status")


def main():
    handshake_cases()
    transmission_cases()
    # the data of both exports, byte for byte, one last time
    print("%d passed, 0 failed" % cases)


if __name__ == "__main__":
    main()
