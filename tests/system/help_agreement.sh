#!/bin/bash
# The CLI's parsers, the top-level usage, the man page and the bash
# completion agree (issue 14): every option a command's parser takes (its
# --help "options:" section, printed from the same table the parser reads)
# is named in `hotsnap --help` for that command, in hotsnap(8) and in the
# completion's list for that command; and the completion offers no option
# the parser refuses.  No root, no daemon.
. "$(dirname "$0")/lib.sh"
DIST=$HERE/../../dist
[ -x "$HOTSNAP" ] || fail "no hotsnap binary at $HOTSNAP (build first)"
usage=$("$HOTSNAP" --help)
man=$(sed 's/\\-/-/g; s/\\f[BIR]//g' "$DIST/hotsnap.8")
comp=$DIST/hotsnap.bash-completion

# the options of one command, from its parser's table
# (the option each line starts with; its help text may name others)
parser_opts() {
    "$HOTSNAP" "$@" --help | sed -n '/^options:/,$p' | grep -oE -- '^ +(-[a-zA-Z], )?--[a-z][a-z-]+' |
        grep -oE -- '--[a-z][a-z-]+' | sort -u || true   # a command may have none
}
# what the completion offers after "hotsnap WORDS... -"
comp_opts() {
    PATH=$(dirname "$HOTSNAP"):$PATH bash -c '. "$1"; shift; COMP_WORDS=(hotsnap "$@" -); COMP_CWORD=${#COMP_WORDS[@]}; COMP_CWORD=$((COMP_CWORD - 1)); _hotsnap; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$comp" "$@" | grep -- '^--' | grep -vx -- '--help' | sort -u || true
}

bad=0
for cmd in "volume create" "volume set" "snapshot create" "backup" "restore" "image attach" \
           "bookmark create" "status" "events" "volume list" "snapshot list" "image list" \
           "snapshot revert" "vm checkpoint" "vm restore" "vm list" \
           "bookmark list"; do
    # shellcheck disable=SC2086
    p=$(parser_opts $cmd)
    # shellcheck disable=SC2086
    c=$(comp_opts $cmd)
    line=$(echo "$usage" | awk -v c="  $cmd " 'index($0, c) == 1 { on = 1; print; next } on && /^         / { print; next } { on = 0 }')
    for o in $p; do
        grep -qw -- "$o" <<<"$line" || { echo "hotsnap --help lacks $o for '$cmd'"; bad=1; }
        grep -q -- "$o" <<<"$man" || { echo "hotsnap(8) lacks $o ('$cmd')"; bad=1; }
        grep -qx -- "$o" <<<"$c" || { echo "the completion lacks $o for '$cmd'"; bad=1; }
    done
    for o in $c; do
        grep -qx -- "$o" <<<"$p" || { echo "the completion offers $o for '$cmd', which its parser refuses"; bad=1; }
    done
done
# the daemon parses for itself (getopt): its usage line is the reference
d=$("$HOTSNAP" daemon --help | grep -oE -- '--[a-z][a-z-]+' | grep -v state-dir | sort -u)
dc=$(comp_opts daemon)
for o in $d; do
    grep -q -- "$o" <<<"$usage" || { echo "hotsnap --help lacks daemon $o"; bad=1; }
    grep -q -- "$o" <<<"$man" || { echo "hotsnap(8) lacks daemon $o"; bad=1; }
    grep -qx -- "$o" <<<"$dc" || { echo "the completion lacks daemon $o"; bad=1; }
done
[ "$bad" = 0 ] || fail "help, man page and completion disagree with the parsers (above)"
log "ok"
