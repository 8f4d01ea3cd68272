#!/bin/bash
# Bad input, refused: every mistake gets one clear line naming what was
# wrong, exit status 1 (error) or 2 (bad usage), and changes nothing: the
# volume and snapshot lists, the state files, the backing files (inode, size,
# mtime, content) and the files under the test directory are compared with a
# baseline after every case.  Every case runs even when an earlier one fails;
# the test fails at the end, listing each failing case.
#
# Known hotsnap bugs this test catches (it fails until they are fixed):
#  - a backing already used by a volume is accepted again when spelled
#    differently ($T/./v1.img, a symlink): two engines over one file
#  - --backing $STATE/./mnt/v1 slips past the "own FUSE directory" check
#  - backup -o onto a volume's backing file replaces that file
#  - --size 8192P reaches the daemon as a negative number
. "$(dirname "$0")/lib.sh"
require_block
require mkfs.ext4 mkfs.btrfs btrfs timeout
setup
start_daemon

FAILED=()
problem() { echo "FAIL: $*" >&2; FAILED+=("$*"); }

# refused STATUS WORDS CMD...: CMD exits STATUS (a regex: 1, 2, [12]) and
# says WORDS (a regex) on stderr, in exactly one line.
refused() {
    local want=$1 words=$2 rc=0 err
    shift 2
    err=$("$@" 2>&1 >/dev/null) || rc=$?
    if ! [[ $rc =~ ^($want)$ ]]; then
        echo "FAIL: '$*' exited $rc, expected $want (stderr: $err)" >&2
        return 1
    fi
    if ! grep -qiE -- "$words" <<<"$err"; then
        echo "FAIL: '$*': message '$err' does not say '$words'" >&2
        return 1
    fi
    if [ "$(wc -l <<<"$err")" != 1 ] || [ -z "$err" ]; then
        echo "FAIL: '$*': the message is not one line: $err" >&2
        return 1
    fi
}

# Everything a refused command must leave as it was: what the daemon lists
# (the fields that say what exists, not the counters that move by
# themselves), the state files, the backing files (inode, size, mtime,
# content) and the names of the files under $T.
state() {
    kill -0 "$DAEMON_PID" 2>/dev/null || { echo "DAEMON DIED"; return 0; }
    hs --json status | /usr/bin/python3 -c '
import hashlib, json, os, sys
t, st = sys.argv[1], sys.argv[2]
keep = ("name", "snapshot", "volume", "backing", "size", "chunk_size", "cow_buffer",
        "diff_dir", "diff_limit", "state", "reason", "error", "device", "fuse_file",
        "snapshots", "created", "all_blocks", "temporary", "backups", "lost")
doc = json.load(sys.stdin)
for key in ("volumes", "snapshots"):
    for item in doc[key]:
        print(json.dumps({k: item[k] for k in keep if k in item}, sort_keys=True))
for f in ("volumes.json", "snapshots.json"):
    print(f, open(os.path.join(st, f)).read())
for f in sorted(os.listdir(t)):
    p = os.path.join(t, f)
    if f.endswith((".img", ".raw")) and os.path.isfile(p):
        s = os.stat(p)
        h = hashlib.sha256(open(p, "rb").read()).hexdigest()
        print(f, "inode", s.st_ino, "size", s.st_size, "mtime", s.st_mtime_ns, h)
for root, dirs, files in os.walk(t):
    if root == os.path.join(st, "mnt"):
        dirs[:] = []
    for f in sorted(dirs + files):
        if f != "daemon.log":
            print(os.path.relpath(os.path.join(root, f), t))
' "$T" "$STATE"
}

# bad STATUS WORDS CMD...: refused as above, and nothing changed.
bad() {
    local now
    refused "$@" || FAILED+=("$*")   # refused said why
    shift 2
    now=$(state)
    if [ "$now" != "$BASE" ]; then
        problem "'$*' changed something: $(diff <(echo "$BASE") <(echo "$now") | grep '^[<>]' | head -4 | tr '\n' ' ')"
        BASE=$now
    fi
}

# After a case that wrongly made a volume: forget it again, so that the
# cases after it start from a known state.
undo_volume() {
    if hs volume remove "$1" >/dev/null 2>&1; then BASE=$(state); fi
}

# --- the scene: v1 attached with ext4 mounted read-only; v2 (ext4, not
# mounted) with two snapshots, one attached; a file no volume uses.
hs volume create v1 --backing "$T/v1.img" --size 8M >/dev/null
d1=$(hs volume attach v1)
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$d1"
mkdir "$T/m1"
mount -o ro,noload "$d1" "$T/m1"
# v3 with btrfs, whose files give no device number of their own (the
# device is found from the mount), and a subvolume in it
hs volume create v3 --backing "$T/v3.img" --size 128M >/dev/null
d3=$(hs volume attach v3)
mkfs.btrfs -q -f "$d3" >/dev/null
mkdir "$T/m3"
mount "$d3" "$T/m3"
btrfs subvolume create "$T/m3/sub" >/dev/null
umount "$T/m3"
mount -o ro "$d3" "$T/m3" # read-only: a mounted btrfs commits every 30 s otherwise
hs volume create v2 --backing "$T/v2.img" --size 8M >/dev/null
d2=$(hs volume attach v2)
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$d2"
hs volume detach v2
hs snapshot create v2 --name s1 >/dev/null
hs snapshot create v2 --name s2 >/dev/null
s2dev=$(hs snapshot attach v2@s2)
head -c 4M /dev/urandom >"$T/other.raw"
mkdir "$T/dir"
ln -s "$T/v1.img" "$T/v1-link"
name65=$(printf 'a%.0s' $(seq 65))
name64=$(printf 'b%.0s' $(seq 64))
BASE=$(state)

# --- unknown volume
for sub in attach detach remove; do
    bad 1 "volume 'nosuch' does not exist" hs volume "$sub" nosuch
done
bad 1 "volume 'nosuch' does not exist" hs snapshot create nosuch
bad 1 "volume 'nosuch' does not exist" hs snapshot create v2 nosuch --name s3
bad 1 "volume 'nosuch' does not exist" hs backup nosuch -o "$T/out.raw" --no-progress
bad 1 "volume 'nosuch' does not exist" hs snapshot attach nosuch@s1

# --- unknown snapshot
for sub in attach detach delete; do
    bad 1 "snapshot v2@nosuch does not exist" hs snapshot "$sub" v2@nosuch
done
bad 1 "snapshot v2@nosuch does not exist" hs backup v2@nosuch -o "$T/out.raw" --no-progress

# --- names: a slash, 65 characters, a leading '-' or '.', no '@'
bad 2 "must not contain '/'" hs volume create a/b --backing "$T/new.img" --size 1M
bad 2 "must not contain '/'" hs volume attach a/b
bad 2 "must not contain '/'" hs snapshot create v2 --name a/b
bad 2 "must not contain '/'" hs snapshot attach v2@a/b
bad 2 "must not contain '/'" hs backup v2/x -o "$T/out.raw"
bad 2 "must not start with" hs backup ../v2 -o "$T/out.raw"
bad 2 "at most 64 characters" hs volume create "$name65" --backing "$T/new.img" --size 1M
bad 2 "at most 64 characters" hs volume attach "$name65"
bad 2 "at most 64 characters" hs snapshot create v2 --name "$name65"
bad 2 "at most 64 characters" hs snapshot delete "v2@$name65"
bad 2 "must not start with" hs volume create --backing "$T/new.img" --size 1M -- -x
bad 2 "must not start with" hs volume create .x --backing "$T/new.img" --size 1M
bad 2 "must not start with" hs volume attach -- -x
bad 2 "must not start with" hs volume remove .x
bad 2 "must not start with" hs snapshot create v2 --name -x
bad 2 "must not start with" hs snapshot create v2 --name .x
bad 2 "must not start with" hs snapshot attach v2@.x
bad 2 "unknown option -x" hs volume create -x --backing "$T/new.img" --size 1M
bad 2 "VOLUME@SNAPSHOT" hs snapshot delete v2

# --- sizes
for s in abc 1.5 1.5.5G 1.G -1 12Q ""; do
    bad 2 "--size '$s' is not a size" hs volume create x --backing "$T/new.img" --size "$s"
done
bad 2 "--size.*(too large|at most)" hs volume create x --backing "$T/new.img" --size 8192P
bad 2 "multiple of 512" hs volume create x --backing "$T/new.img" --size 1000
bad 2 "multiple of 512" hs volume create x --backing "$T/new.img" --size 0
bad 1 "--size .* is larger than backing" hs volume create x --backing "$T/other.raw" --size 5M
for c in 3K 2K 2M 0 12288; do
    bad 2 "--chunk-size .*power of two from 4 KiB to 1 MiB" \
        hs volume create x --backing "$T/new.img" --size 1M --chunk-size "$c"
done
bad 2 "--cow-buffer must hold at least two chunks \(8 KiB\)" \
    hs volume create x --backing "$T/new.img" --size 1M --cow-buffer 4K
bad 2 "--cow-buffer must hold at least two chunks \(128 KiB\)" \
    hs volume create x --backing "$T/new.img" --size 1M --chunk-size 64K --cow-buffer 64K
bad 2 "--diff-limit must hold at least one chunk" \
    hs volume create x --backing "$T/new.img" --size 1M --diff-limit 0

# --- backings
bad 1 "$T/new.img does not exist.*--size" hs volume create x --backing "$T/new.img"
bad 1 "$T/dir.*(directory|neither a regular file nor a block device)" \
    hs volume create x --backing "$T/dir"
bad 1 "$T/dir.*(directory|neither a regular file nor a block device)" \
    hs volume create x --backing "$T/dir" --size 1M
bad 1 "cannot create diff files in $T/nodir" \
    hs volume create x --backing "$T/new.img" --size 1M --diff-dir "$T/nodir"
bad 1 "volume 'v1' exists already" hs volume create v1 --backing "$T/other.raw"
bad 1 "already the backing of volume 'v1'" hs volume create x --backing "$T/v1.img"
# the same file by another path is the same backing (two engines over one
# file would write past each other's copy-on-write)
bad 1 "already the backing of volume 'v1'" hs volume create dup1 --backing "$T/./v1.img"
undo_volume dup1
bad 1 "already the backing of volume 'v1'" hs volume create dup2 --backing "$T/v1-link"
undo_volume dup2
bad 2 "cannot be a file of hotsnap's own FUSE directory" \
    hs volume create fuse1 --backing "$STATE/mnt/v1"
bad '[12]' "own FUSE directory|already the backing" hs volume create fuse2 --backing "$STATE/./mnt/v1"
undo_volume fuse2
# nor on a file system this daemon serves (its writes would wait for the
# FUSE workers they hold up)
bad 2 "--backing $T/m1/inner.img lies on v1, which this daemon serves itself" \
    hs volume create inner --backing "$T/m1/inner.img" --size 1M
bad 2 "--diff-dir $T/m1 lies on v1, which this daemon serves itself" \
    hs volume create x --backing "$T/new.img" --size 1M --diff-dir "$T/m1"
bad 2 "--diff-dir $T/m1 lies on v1, which this daemon serves itself" \
    hs volume set v2 --diff-dir "$T/m1"
bad 2 "--backing $d1 lies on v1, which this daemon serves itself" \
    hs volume create blk --backing "$d1"
bad 2 "--diff-dir $T/m3 lies on v3, which this daemon serves itself" \
    hs volume create x --backing "$T/new.img" --size 1M --diff-dir "$T/m3"
bad 2 "--diff-dir $T/m3/sub lies on v3, which this daemon serves itself" \
    hs volume set v2 --diff-dir "$T/m3/sub"
bad 2 "--backing $T/m3/sub/inner.img lies on v3, which this daemon serves itself" \
    hs volume create inner3 --backing "$T/m3/sub/inner.img" --size 1M

# --- busy volumes and snapshots
bad 1 "volume 'v1' is attached as $d1: detach it first" hs volume remove v1
bad 1 "volume 'v2' has snapshots: delete them first.*v2@s1.*v2@s2" hs volume remove v2
bad 1 "$d1 is mounted at $T/m1; unmount it first" hs volume detach v1
bad 1 "snapshot v2@s2 is attached as $s2dev: detach it first" hs snapshot delete v2@s2
bad 1 "volume 'v2' is not attached" hs volume detach v2
bad 1 "snapshot v2@s1 is not attached" hs snapshot detach v2@s1
bad 1 "snapshot v2@s1 exists already" hs snapshot create v2 --name s1
bad 2 "volume 'v2' is named twice" hs snapshot create v2 v2 --name s3

# --- the command line
bad 2 "unknown option '--bogus'" hs volume create x --backing "$T/new.img" --size 1M --bogus
bad 2 "unknown option '--bogus'" hs volume attach v1 --bogus
bad 2 "unknown option '--bogus'" hs snapshot create v2 --bogus
bad 2 "unknown option '--bogus'" hs backup v2@s1 -o "$T/out.raw" --bogus
bad 2 "unknown option '--bogus'" hs status --bogus
bad 2 "unknown option -z" hs snapshot list -z
bad 2 "--backing needs a value" hs volume create x --backing
bad 2 "--size needs a value" hs volume create x --backing "$T/new.img" --size
bad 2 "--name needs a value" hs snapshot create v2 --name
bad 2 "-o needs a value" hs backup v2@s1 -o
bad 2 "--rate needs a value" hs backup v2@s1 -o "$T/out.raw" --rate
bad 2 "--backing PATH is required" hs volume create x --size 1M
bad 2 "unexpected argument 'v2'" hs volume attach v1 v2
bad 2 "missing NAME" hs volume attach
bad 2 "--state-dir needs a directory" "$HOTSNAP" --state-dir
bad 2 "state dir must be an absolute path" "$HOTSNAP" --state-dir relative status
# the global parser adds the usage after its one line; the line names it
err=$(hs --bogus status 2>&1) && problem "hs --bogus status succeeded"
head -1 <<<"$err" | grep -q "unknown option '--bogus'" || problem "hs --bogus status said: $(head -1 <<<"$err")"
[ "$(state)" = "$BASE" ] || problem "hs --bogus status changed something"
err=$(hs volume frob 2>&1) && problem "hs volume frob succeeded"
head -1 <<<"$err" | grep -q "unknown subcommand 'frob'" || problem "hs volume frob said: $(head -1 <<<"$err")"

# --- backup
bad 2 "-o FILE is required" hs backup v2@s1
bad 2 "-o FILE is required" hs backup v2
bad 1 "cannot create the image in $T/nodir" hs backup v2@s1 -o "$T/nodir/out.raw" --no-progress
bad 2 "--rate '0' is not a positive whole number" hs backup v2@s1 -o "$T/out.raw" --rate 0
bad 2 "--rate 'fast' is not a positive whole number" hs backup v2@s1 -o "$T/out.raw" --rate fast
bad 2 "--format 'vmdk' is not raw or qcow2" hs backup v2@s1 -o "$T/out.raw" --format vmdk
bad 2 "--compress 'lz4' is not zstd, zlib or none" hs backup v2@s1 -o "$T/out.q" --format qcow2 --compress lz4
bad 2 "--compress needs --format qcow2" hs backup v2@s1 -o "$T/out.raw" --compress zstd
bad 2 "-o - streams a raw image" hs backup v2@s1 -o - --format qcow2
bad 2 "--consume is for VOLUME@SNAPSHOT" hs backup v2 -o "$T/out.raw" --consume
bad 2 "--all-blocks needs a snapshot taken with --all-blocks" \
    hs backup v2@s1 -o "$T/out.raw" --all-blocks --no-progress
# an image over a volume's backing file would replace the volume's data
bad '[12]' "backing.*volume 'v1'|volume 'v1'.*backing" hs backup v2@s1 -o "$T/v1.img" --no-progress
bad 2 "--incremental writes qcow2" hs backup v2@s1 -o "$T/out.raw" --format raw --incremental "$T/other.raw"
bad 1 "--incremental .*nofile.qcow2.*No such file" hs backup v2@s1 -o "$T/out.q" --incremental "$T/nofile.qcow2" --no-progress
bad 1 "not a qcow2 image hotsnap wrote.*full backup is needed" \
    hs backup v2@s1 -o "$T/out.q" --incremental "$T/other.raw" --no-progress

# --- restore, bookmarks, images
bad 2 "either --to VOLUME or --new NAME --backing PATH" hs restore "$T/other.raw"
bad 2 "--new NAME needs --backing PATH" hs restore "$T/other.raw" --new n
bad 2 "--backing goes with --new" hs restore "$T/other.raw" --to v2 --backing "$T/x.img"
bad 2 "--verify-only compares with an existing volume" hs restore "$T/other.raw" --new n --backing "$T/x.img" --verify-only
bad 1 "cannot restore from .*nofile.img.*No such file" hs restore "$T/nofile.img" --to v2 --no-progress
bad 1 "is attached as $d1" hs restore "$T/other.raw" --to v1 --no-progress
bad 1 "has snapshots: delete them first" hs restore "$T/other.raw" --to v2 --no-progress
bad 1 "volume 'nope' does not exist" hs restore "$T/other.raw" --to nope --no-progress
bad 1 "exists already" hs restore "$T/other.raw" --new v2 --backing "$T/x.img" --no-progress
bad 2 "a bookmark is named VOLUME#NAME" hs bookmark delete v2
bad 2 "bad bookmark 'v2#a/b'" hs bookmark delete 'v2#a/b'
bad 1 "bookmark v2#nope does not exist" hs bookmark delete 'v2#nope'
bad 1 "volume 'nope' does not exist" hs bookmark delete 'nope#x'
bad 1 "snapshot v2@nope does not exist" hs bookmark create v2@nope
bad 1 "cannot attach .*nofile.img.*No such file" hs image attach "$T/nofile.img"
bad 2 "cannot use .*as the image's name.*give --name" hs image attach "$T/dir/.hidden.raw"
bad 1 "no image named 'nope' is attached" hs image detach nope
bad 1 "nofile.qcow2.*No such file" hs image info "$T/nofile.qcow2"

# --- a second daemon on the same state dir
bad 1 "another hotsnap daemon \(pid $DAEMON_PID\) is already running on $STATE" \
    timeout -k 5 30 "$HOTSNAP" --state-dir "$STATE" daemon
bad 1 "another hotsnap daemon \(pid $DAEMON_PID\) is already running on $STATE" \
    timeout -k 5 30 "$HOTSNAP" --state-dir "$STATE" daemon --detach
hs --json status >"$T/st.json" || problem "the first daemon stopped answering"
[ "$(json_get '["pid"]' <"$T/st.json")" = "$DAEMON_PID" ] || problem "status comes from another pid"
[ "$(json_get '["fuse_mounted"]' <"$T/st.json")" = True ] || problem "the first daemon lost its FUSE mount"
[ "$(sha_dev "$STATE/mnt/v2")" = "$(sha_dev "$T/v2.img")" ] || problem "the first daemon no longer serves v2"
hs snapshot create v2 --name after-second-daemon >/dev/null || problem "the first daemon refuses commands"
hs snapshot delete v2@after-second-daemon || problem "the first daemon refuses commands"
BASE=$(state)

# --- the limits are where the messages say: a 64-character name is fine
hs volume create "$name64" --backing "$T/new.img" --size 1M >/dev/null ||
    problem "a 64-character volume name was refused"
hs volume remove "$name64" || problem "cannot remove the 64-character volume"
rm -f "$T/new.img"
[ "$(state)" = "$BASE" ] || problem "create and remove of a volume left something behind"

umount "$T/m1" "$T/m3"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf '  failed: %s\n' "${FAILED[@]}" >&2
    fail "${#FAILED[@]} bad-input case(s) failed"
fi
log "every bad input refused with one clear line, nothing changed"
