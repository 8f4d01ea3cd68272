#!/usr/bin/python3
"""nbd_dying_server.py SOCKET SIZE READS: a plain NBD server (fixed
newstyle, simple replies, one export of SIZE bytes of 0xA5) on a unix
socket that answers READS read requests and then closes the connection: a
remote that goes away mid-backup, on cue.  Serves one client, then exits."""
import os
import socket
import struct
import sys

path, size, reads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
NBDMAGIC, IHAVEOPT, REPLYMAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()


def recv(n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            sys.exit(0)
        b += x
    return b


def opt_reply(opt, typ, data=b""):
    c.sendall(struct.pack(">QIII", REPLYMAGIC, opt, typ, len(data)) + data)


c.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, 1 | 2))
recv(4)
while True:
    _, opt, ln = struct.unpack(">QII", recv(16))
    recv(ln)
    if opt == 7:  # GO: the export's size and flags (HAS_FLAGS | READ_ONLY), then ACK
        opt_reply(opt, 3, struct.pack(">HQH", 0, size, 1 | 2))
        opt_reply(opt, 1)
        break
    opt_reply(opt, 0x80000001)  # anything else: unsupported
served = 0
while True:
    magic, flags, typ, cookie, off, ln = struct.unpack(">IHHQQI", recv(28))
    if typ == 2:  # disconnect
        break
    if typ != 0 or served >= reads:
        break  # the remote goes away
    c.sendall(struct.pack(">IIQ", 0x67446698, 0, cookie) + b"\xa5" * ln)
    served += 1
c.close()
os.unlink(path)
