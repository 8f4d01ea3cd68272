#!/usr/bin/python3
"""help2man.py HOTSNAP GROUP OUT: the man page hotsnap-GROUP(8), made from
what the CLI's own parser tables print for --help, so the page cannot
drift from the commands (the build runs this; see dist/meson.build)."""
import subprocess
import sys

hotsnap, group, out = sys.argv[1:4]
SUBS = {
    "volume": ["create", "set", "attach", "detach", "list", "remove"],
    "snapshot": ["create", "list", "attach", "detach", "delete"],
    "image": ["attach", "detach", "list", "info"],
    "bookmark": ["list", "create", "delete"],
    "backup": [None], "restore": [None], "status": [None], "events": [None],
    "shutdown": [None], "daemon": [None],
}
SUMMARY = {
    "volume": "define, change, attach and remove volumes",
    "snapshot": "point-in-time snapshots of volumes, one instant for a set",
    "image": "serve backup images read-only, and look inside them",
    "bookmark": "the instants incremental backups start from",
    "backup": "write an image of a snapshot or a volume",
    "restore": "write an image chain back into a volume",
    "status": "the daemon, its volumes, snapshots and backups",
    "events": "what happens in the daemon, as it happens",
    "shutdown": "stop the daemon",
    "daemon": "run the hotsnap daemon",
}


def roff(text):
    lines = []
    for line in text.rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def help_of(words):
    r = subprocess.run([hotsnap] + words + ["--help"], capture_output=True, text=True)
    return r.stdout or r.stderr


page = [
    '.TH HOTSNAP\\-%s 8 "" "hotsnap" "System Administration"' % group.upper(),
    ".SH NAME",
    "hotsnap\\-%s \\- %s" % (group, SUMMARY[group]),
    ".SH DESCRIPTION",
    "This page is made from the commands' own \\fB\\-\\-help\\fR, which the same"
    " tables as their parsers print; see \\fBhotsnap\\fR(8) for the whole tool.",
]
for sub in SUBS[group]:
    words = [group] + ([sub] if sub else [])
    page.append(".SH %s" % " ".join(words).upper())
    page.append(".nf")
    page.append(roff(help_of(words)))
    page.append(".fi")
page += [".SH SEE ALSO", ".BR hotsnap (8)"]
with open(out, "w") as f:
    f.write("\n".join(page) + "\n")
