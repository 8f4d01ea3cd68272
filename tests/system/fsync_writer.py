#!/usr/bin/python3
# fsync_writer.py ROOT SUBDIR MANIFEST - writes files of random content into
# ROOT/SUBDIR until killed; each is fsynced, and its directory too, before
# its path (relative to ROOT) and sha256 are appended (and flushed) to
# MANIFEST, which lives elsewhere.  So every file the manifest names was
# durable before the writer went on.
import hashlib, os, sys

root, sub, manifest = sys.argv[1], sys.argv[2], sys.argv[3]
d = os.path.join(root, sub)
os.makedirs(d, exist_ok=True)
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
with open(manifest, "a") as m:
    i = 0
    while True:
        data = os.urandom(4096 + (i * 7919) % 200000)
        name = "f%06d" % i
        try:
            fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            done = 0
            while done < len(data):  # a full file system makes writes short
                n = os.write(fd, data[done:])
                if n <= 0:
                    sys.exit(0)
                done += n
            os.fsync(fd)
            os.close(fd)
            os.fsync(dfd)
        except OSError:
            sys.exit(0)  # the volume went away under us: that is the test
        m.write("%s/%s %s\n" % (sub, name, hashlib.sha256(data).hexdigest()))
        m.flush()
        i += 1
