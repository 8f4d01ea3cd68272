#!/usr/bin/python3
"""Raw client of hotsnap's control socket, for control_socket.sh.

    control_socket.py SOCKET request [--replies N] [--fd PATH[:ro]]... [--half-close]
        sends stdin as is (no newline added) and prints each reply line, up
        to N (default 1) or until the daemon closes; "EOF" when it closed
        before N replies, "TIMEOUT" after 20 s without one.  --fd passes
        descriptors with the request (SCM_RIGHTS); --half-close shuts down
        the sending side after the request.
    control_socket.py SOCKET flood N
        N clients connect at once, each sends a status request and reads one
        reply; prints "ok A busy B other C" and the first few others.
    control_socket.py SOCKET idle N READY_FILE
        holds N connections open without a word; creates READY_FILE when all
        are connected, then waits to be killed.
"""
import os
import socket
import sys
import threading
import time

TIMEOUT = 20


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)  # blocking: waits for room in the listen backlog
    s.settimeout(TIMEOUT)
    return s


def read_lines(s, n):
    """Up to n reply lines; "EOF"/"TIMEOUT" marks an early end."""
    buf, lines = b"", []
    while len(lines) < n:
        while b"\n" in buf and len(lines) < n:
            line, buf = buf.split(b"\n", 1)
            lines.append(line.decode("utf-8", "backslashreplace"))
        if len(lines) == n:
            break
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            lines.append("TIMEOUT")
            break
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            if buf:
                lines.append(buf.decode("utf-8", "backslashreplace"))
            lines.append("EOF")
            break
        buf += chunk
    return lines


def request(path, args):
    replies, fds, half = 1, [], False
    i = 0
    while i < len(args):
        if args[i] == "--replies":
            replies = int(args[i + 1])
            i += 2
        elif args[i] == "--fd":
            spec = args[i + 1]
            ro = spec.endswith(":ro")
            name = spec[:-3] if ro else spec
            fds.append(os.open(name, os.O_RDONLY if ro else os.O_WRONLY | os.O_CREAT, 0o600))
            i += 2
        elif args[i] == "--half-close":
            half = True
            i += 1
        else:
            sys.exit(f"unknown argument {args[i]}")
    data = sys.stdin.buffer.read()
    s = connect(path)

    def send():
        # in its own thread: replies to the first lines may come back
        # while the rest is still being sent, and must be read meanwhile
        try:
            if fds:
                socket.send_fds(s, [data[:1]], fds)
            s.sendall(data[1:] if fds else data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return  # the daemon may have answered and closed: read that
        if half:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    for line in read_lines(s, replies):
        print(line)
    sender.join(TIMEOUT)
    for fd in fds:
        os.close(fd)


def flood(path, n):
    counts = {"ok": 0, "busy": 0, "other": 0}
    others = []
    lock = threading.Lock()
    go = threading.Event()

    def client():
        go.wait()
        try:
            s = connect(path)
            try:
                s.sendall(b'{"cmd":"status"}\n')
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before it spoke: the refusal is there to read
            line = read_lines(s, 1)[0]
            s.close()
        except OSError as e:
            line = "error: " + repr(e)
        kind = "other"
        if line.startswith('{"ok":true'):
            kind = "ok"
        elif line.startswith('{"ok":false') and "busy" in line:
            kind = "busy"
        with lock:
            counts[kind] += 1
            if kind == "other":
                others.append(line[:200])

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    print("ok %d busy %d other %d" % (counts["ok"], counts["busy"], counts["other"]))
    for o in others[:5]:
        print("  other:", o)


def idle(path, n, ready):
    socks = [connect(path) for _ in range(n)]
    open(ready, "w").close()
    while True:
        time.sleep(3600)
    del socks


def main():
    path, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "request":
        request(path, rest)
    elif mode == "flood":
        flood(path, int(rest[0]))
    elif mode == "idle":
        idle(path, int(rest[0]), rest[1])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
