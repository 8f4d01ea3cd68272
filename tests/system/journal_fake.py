#!/usr/bin/python3
"""journal_fake.py SOCKET OUT: listens where sd_journal_send writes (the
journal's native datagram socket) and appends each entry it gets to OUT as
one JSON object per line, until it is ended.  Entries are the native
protocol: KEY=value lines, or KEY, a newline, a 64-bit little-endian length
and the value (for values with newlines)."""
import json
import socket
import struct
import sys

sock_path, out = sys.argv[1:3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
print("listening", flush=True)
with open(out, "a") as f:
    while True:
        data = s.recv(1 << 20)
        entry, i = {}, 0
        while i < len(data):
            nl = data.index(b"\n", i)
            line = data[i:nl]
            if b"=" in line:
                k, v = line.split(b"=", 1)
                i = nl + 1
            else:
                k = line
                (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
                v = data[nl + 9:nl + 9 + n]
                i = nl + 9 + n + 1
            entry[k.decode()] = v.decode(errors="replace")
        f.write(json.dumps(entry) + "\n")
        f.flush()
