"""nbd_raw.py - a raw-bytes NBD client for hotsnap's tests (standard library only).

It speaks the protocol byte by byte, so tests can send what no real client
would: lying lengths, unknown commands and flags, half requests.  As a program
it runs one command on one export and prints the result, for the .sh tests:

    nbd_raw.py SOCKET EXPORT read OFF LEN        -> "ok SHA256" or "error N"
    nbd_raw.py SOCKET EXPORT write OFF LEN BYTE  -> "ok" or "error N"
    nbd_raw.py SOCKET EXPORT trim OFF LEN        -> "ok" or "error N"
    nbd_raw.py SOCKET EXPORT cache OFF LEN       -> "ok" or "error N"

(N is the NBD error value: 1 EPERM, 5 EIO, 22 EINVAL, ...)
"""
import hashlib
import socket
import struct
import sys

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR_UNSUP, REP_ERR_INVALID, REP_ERR_UNKNOWN = 0x80000001, 0x80000003, 0x80000006
REP_ERR_POLICY, REP_ERR_TLS_REQD = 0x80000002, 0x80000005

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE = 0, 1, 2, 3, 4, 5
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE, FLAG_FAST_ZERO = 1, 2, 4, 8, 16
FLAG_READ_ONLY = 2

REPLY_NONE, REPLY_OFFSET_DATA, REPLY_OFFSET_HOLE, REPLY_BLOCK_STATUS = 0, 1, 2, 5

EPERM, EIO, EINVAL, ENOTSUP = 1, 5, 22, 95


class Closed(Exception):
    """The server closed the connection."""


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Closed("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def is_closed(sock):
    """True when the server has closed the connection (reads end of file)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class Client:
    def __init__(self, path, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # only a guard so a broken server fails the test instead of hanging it
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.structured = False
        self.size = None
        self.tflags = None
        self.cookie = 0

    def close(self):
        self.sock.close()

    # --- handshake -------------------------------------------------------------

    def greet(self, cflags=3):
        magic, opt_magic, hs_flags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        assert magic == NBD_MAGIC and opt_magic == IHAVEOPT, "bad greeting"
        assert hs_flags & 1, "not fixed newstyle"
        self.sock.sendall(struct.pack(">I", cflags))
        return hs_flags

    def send_option(self, opt, data=b"", length=None):
        if length is None:
            length = len(data)
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, opt, length) + data)

    def option_reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
        assert magic == OPT_REPLY_MAGIC, "bad option reply magic %x" % magic
        return opt, rtype, recv_exact(self.sock, length)

    def option_replies(self):
        """All replies to one option, up to and including the final one."""
        out = []
        while True:
            opt, rtype, data = self.option_reply()
            out.append((rtype, data))
            if rtype not in (REP_SERVER, REP_INFO, REP_META_CONTEXT):
                return out

    def structured_reply(self):
        self.send_option(OPT_STRUCTURED_REPLY)
        (rtype, _), = self.option_replies()
        assert rtype == REP_ACK
        self.structured = True

    def set_meta(self, name, queries):
        data = struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(queries))
        for q in queries:
            data += struct.pack(">I", len(q)) + q.encode()
        self.send_option(OPT_SET_META_CONTEXT, data)
        reps = self.option_replies()
        assert reps[-1][0] == REP_ACK, "SET_META_CONTEXT failed: %r" % (reps,)
        return {d[4:].decode(): struct.unpack(">I", d[:4])[0] for t, d in reps[:-1]}

    def go(self, name, opt=OPT_GO):
        data = struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0)
        self.send_option(opt, data)
        reps = self.option_replies()
        for rtype, d in reps:
            if rtype == REP_INFO and struct.unpack(">H", d[:2])[0] == 0:
                self.size, self.tflags = struct.unpack(">QH", d[2:12])
        return reps[-1][0], reps[-1][1]

    def connect_export(self, name, structured=False, meta=None):
        self.greet()
        if structured:
            self.structured_reply()
        ids = self.set_meta(name, meta) if meta else {}
        rtype, msg = self.go(name)
        assert rtype == REP_ACK, "GO %s failed: %x %r" % (name, rtype, msg)
        return ids

    # --- transmission ----------------------------------------------------------

    def send_request(self, cmd, off=0, length=0, flags=0, data=b"", cookie=None):
        if cookie is None:
            self.cookie += 1
            cookie = self.cookie
        self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, off, length)
                          + data)
        return cookie

    def simple_reply(self, read_len=0):
        magic, error, cookie = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        assert magic == SIMPLE_REPLY_MAGIC, "bad simple reply magic %x" % magic
        data = recv_exact(self.sock, read_len) if error == 0 and read_len else b""
        return error, cookie, data

    def reply(self, read_off=0, read_len=0, buf=None):
        """One whole reply: (error, cookie, data or extents).  The server may
        interleave the chunks of replies in flight: a caller with several
        reads outstanding passes one buf for all (offsets are absolute)."""
        if not self.structured:
            return self.simple_reply(read_len)
        if buf is None:
            buf = bytearray(read_len)
        error, cookie, extents = 0, None, {}
        while True:
            head = recv_exact(self.sock, 4)
            magic = struct.unpack(">I", head)[0]
            if magic == SIMPLE_REPLY_MAGIC:
                err, cookie = struct.unpack(">IQ", recv_exact(self.sock, 12))
                return err, cookie, b""
            assert magic == STRUCTURED_REPLY_MAGIC, "bad reply magic %x" % magic
            flags, rtype, cookie, length = struct.unpack(">HHQI", recv_exact(self.sock, 16))
            p = recv_exact(self.sock, length)
            if rtype == REPLY_OFFSET_DATA:
                off = struct.unpack(">Q", p[:8])[0] - read_off
                assert 0 <= off and off + len(p) - 8 <= read_len, "data chunk out of range"
                buf[off:off + len(p) - 8] = p[8:]
            elif rtype == REPLY_OFFSET_HOLE:
                off, n = struct.unpack(">QI", p)
                off -= read_off
                assert n > 0 and 0 <= off and off + n <= read_len, "hole out of range"
                buf[off:off + n] = bytes(n)
            elif rtype == REPLY_BLOCK_STATUS:
                ctx = struct.unpack(">I", p[:4])[0]
                extents[ctx] = [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]
            elif rtype & 0x8000:
                error = struct.unpack(">I", p[:4])[0]
            else:
                assert rtype == REPLY_NONE, "unexpected chunk type %d" % rtype
            if flags & 1:
                return error, cookie, (extents if extents else bytes(buf))

    def read(self, off, length, flags=0):
        self.send_request(CMD_READ, off, length, flags)
        return self.reply(off, length)

    def write(self, off, data, flags=0):
        self.send_request(CMD_WRITE, off, len(data), flags, data)
        return self.reply()[0]

    def command(self, cmd, off=0, length=0, flags=0):
        self.send_request(cmd, off, length, flags)
        return self.reply()[0]

    def disconnect(self):
        self.send_request(CMD_DISC)
        self.sock.close()


def main(argv):
    if len(argv) < 5:
        sys.stderr.write(__doc__)
        return 2
    path, name, op = argv[1], argv[2], argv[3]
    off, length = int(argv[4], 0), int(argv[5], 0)
    c = Client(path)
    c.connect_export(name, structured=True)
    if op == "read":
        err, _, data = c.read(off, length)
        print("error %d" % err if err else "ok " + hashlib.sha256(data).hexdigest())
    elif op == "write":
        err = c.write(off, bytes([int(argv[6], 0)]) * length)
        print("error %d" % err if err else "ok")
    elif op in ("trim", "cache"):
        err = c.command(CMD_TRIM if op == "trim" else CMD_CACHE, off, length)
        print("error %d" % err if err else "ok")
    else:
        sys.stderr.write("unknown operation %s\n" % op)
        return 2
    c.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
