#!/usr/bin/python3
"""notify_ready.py SOCKET STATE VOLUME -- CMD...: runs CMD (a daemon) with
NOTIFY_SOCKET=SOCKET as systemd would, waits for READY=1, and at that very
moment checks that VOLUME is attached and its stable name STATE/dev/VOLUME
points at a loop device that reads.  Prints the messages it got; exits 0
when READY came and the volume was served by then, 1 otherwise (the daemon
is left running: the caller stops it by the pid printed first)."""
import os
import socket
import subprocess
import sys

sock_path, state, volume = sys.argv[1:4]
cmd = sys.argv[5:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
s.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=sock_path)
p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(state + "/../daemon.log", "a"))
print("pid", p.pid, flush=True)
ready = False
while not ready:
    try:
        msg = s.recv(4096).decode()
    except socket.timeout:
        print("no READY=1 within 60 s", flush=True)
        sys.exit(1)
    print("notify:", msg.replace("\n", " | "), flush=True)
    ready = "READY=1" in msg.split("\n")
link = os.path.join(state, "dev", volume)
try:
    dev = os.readlink(link)
except OSError as e:
    print("at READY, %s: %s" % (link, e), flush=True)
    sys.exit(1)
with open(link, "rb") as f:
    if len(f.read(4096)) != 4096:
        print("at READY, %s -> %s does not read" % (link, dev), flush=True)
        sys.exit(1)
print("at READY, %s -> %s reads" % (link, dev), flush=True)
sys.exit(0)
