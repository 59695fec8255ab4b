#!/bin/busybox sh
# xenfront nested lab: Dom0 scenario runner. Runs every scenario listed in
# /scenarios/manifest one after another and reports over the console with
# "XFLAB:" framed lines (see docs/lab.md for the framing).
#
# Per scenario directory /scenarios/<n>/:
#   meta    shell assignments: NAME (xl domain name), TIMEOUT (s), SCRIPT_WAIT (s), CAP (bytes)
#   cfg     xl config, already rewritten by the host (kernel=, name=, on_*="preserve", extra=)
#   kernel  guest kernel; ramdisk (optional); script (optional Dom0 script); files/ (optional)
#   precreate  optional Dom0 script run (and waited for) before xl create; output in out/
export PATH=${XF_PATH_PREFIX:+$XF_PATH_PREFIX:}/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Overridable only so the host-side unit test (lab/tests/runner.rs) can run this script
# with a fake xl; in Dom0 the defaults apply.
SCEN=${XF_SCEN:-/scenarios}
LOGDIR=${XF_LOGDIR:-/var/log/xen}
TMPD=${XF_TMP:-/tmp}
DMESG=${XF_DMESG:-dmesg}
# The helper library of the Dom0 scripts (lab/dom0/lib.sh), shipped next to this file.
case $0 in */*) LIB=${0%/*} ;; *) LIB=. ;; esac
LIB=$(cd "$LIB" && pwd)/lib.sh

mark() { echo "XFLAB:$*"; }
# Milliseconds since Dom0 boot (10 ms resolution), without forking.
now() { read -r _up _ </proc/uptime; NOW=$(( ${_up%.*} * 1000 + 1${_up#*.} * 10 - 1000 )); }

# sendfile <n> <kind> <path> [<name>]: ship a file back base64-encoded, capped at CAP bytes.
sendfile() {
    _f=$3; [ -f "$_f" ] || return 0
    _size=$(wc -c <"$_f"); _trunc=0
    if [ "$_size" -gt "$CAP" ]; then _trunc=1; head -c "$CAP" "$_f" >"$TMPD/xfer"; _f=$TMPD/xfer; fi
    _sum=$(sha256sum "$_f"); _sum=${_sum%% *}
    echo "XFLAB:file $1 $2 $_size $_trunc ${4:-}"
    # One echo (one write, one Xen console chunk of <128 bytes) per line, so Xen's own
    # messages can only land between lines, never inside one.
    # gzip first: the serial line runs at 115200 baud (~11 KB/s).
    gzip -1 -c "$_f" | base64 | while IFS= read -r _l; do echo "XFLAB:b64 $_l"; done
    echo "XFLAB:endfile $1 $_sum gz"
}

scan_faults() { # <n> <file> <label>
    grep -E 'traps:|segfault|general protection|libxl: error|fatal signal|malloc\(\)' "$2" 2>/dev/null \
        | head -n 20 | while IFS= read -r l; do echo "XFLAB:fault $1 $3: $l"; done
}

toolstack_crash() { # <rc> <output file>: did xl itself crash (vs. a refused config)?
    [ "$1" -ge 128 ] && return 0
    grep -qE 'fatal signal|malloc\(\)|corrupted|Segmentation fault|Aborted' "$2"
}

run_one() {
    n=$1; d=$SCEN/$n
    NAME=x$n; TIMEOUT=60; SCRIPT_WAIT=30; CAP=262144
    . "$d/meta"
    log=$LOGDIR/console/guest-$NAME.log
    xllog=$LOGDIR/xl-$NAME.log
    mark "begin $n $NAME"
    rm -f "$log" "$xllog"
    $DMESG -c >/dev/null 2>&1
    # Optional pre-create script (a disk image the config names): run to completion first.
    if [ -f "$d/precreate" ]; then
        mkdir -p "$d/out" "$d/files"
        ( cd "$d/out" && NAME=$NAME OUT=$d/out FILES=$d/files SCENARIO_DIR=$d XF_LIB=$LIB \
              exec sh -c '. "$XF_LIB" && . "$0"' "$d/precreate" ) >"$d/out/precreate.out" 2>&1 </dev/null
        echo "precreate exit $?" >>"$d/out/precreate.out"
    fi

    attempt=1
    while :; do
        now; t_create=$NOW
        xl create -p "$d/cfg" >"$d/create.out" 2>&1; rc=$?
        now; t_created=$NOW
        [ $rc -eq 0 ] && break
        cat "$d/create.out" | tail -n 20 | while IFS= read -r l; do echo "XFLAB:createlog $n $l"; done
        xl destroy "$NAME" >/dev/null 2>&1
        if [ $attempt -eq 1 ] && toolstack_crash $rc "$d/create.out"; then
            mark "retry $n xl create crashed (rc=$rc): $(grep -m1 -E 'libxl: error|fatal signal|malloc' "$d/create.out")"
            scan_faults $n "$d/create.out" "xl create (attempt 1)"
            attempt=2; rm -f "$log" "$xllog"; continue
        fi
        if toolstack_crash $rc "$d/create.out"; then
            scan_faults $n "$d/create.out" "xl create"
            mark "labfail $n xl create crashed twice (rc=$rc)"
        else
            mark "fail $n xl create failed (rc=$rc): $(grep -m1 -E 'error|Error|failed' "$d/create.out")"
        fi
        sendfile $n xlcreate "$d/create.out"
        mark "end $n"
        return
    done
    mark "t $n create_ms $((t_created - t_create))"
    domid=$(xl domid "$NAME")
    mark "domid $n $domid"

    # Live relay of the guest console (host strips the prefix).
    rm -f "$TMPD/relay"; mkfifo "$TMPD/relay"
    tail -F -n +1 "$log" >"$TMPD/relay" 2>/dev/null &
    tailpid=$!
    rm -f "$TMPD/relayed"
    ( c=0; while IFS= read -r l; do echo "XFLAB:con $n $l"; c=$((c + 1)); echo $c >"$TMPD/relayed"; done <"$TMPD/relay" ) &
    relpid=$!

    now; t_unpause=$NOW
    xl unpause "$NAME" >"$d/unpause.out" 2>&1 || mark "fail $n xl unpause failed: $(head -n1 "$d/unpause.out")"
    spid=
    if [ -f "$d/script" ]; then
        mkdir -p "$d/out" "$d/files"
        # The script runs with lib.sh's helpers already defined ($0 is the script).
        ( cd "$d/out" && DOMID=$domid NAME=$NAME CONSOLE_LOG=$log OUT=$d/out FILES=$d/files \
              SCENARIO_DIR=$d XF_LIB=$LIB exec sh -c '. "$XF_LIB" && . "$0"' "$d/script" ) \
            >"$d/script.out" 2>&1 </dev/null &
        spid=$!
    fi

    deadline=$((t_unpause + TIMEOUT * 1000))
    t_first=; t_gone=; reason=; i=0
    while :; do
        now
        if [ -z "$t_first" ] && [ -s "$log" ]; then t_first=$NOW; fi
        i=$((i + 1))
        if [ $((i % 10)) -eq 0 ]; then
            if grep -q 'has shut down, reason code' "$xllog" 2>/dev/null; then
                t_gone=$NOW
                reason=$(sed -n 's/.*has shut down, reason code \([0-9]*\).*/\1/p' "$xllog" | head -n1)
                break
            fi
            if [ $((i % 100)) -eq 0 ] && ! xl domid "$NAME" >/dev/null 2>&1; then
                t_gone=$NOW; reason=gone; break
            fi
        fi
        [ "$NOW" -ge "$deadline" ] && break
        usleep 20000
    done
    [ -n "$t_first" ] && { mark "t $n create_first_ms $((t_first - t_create))"; mark "t $n unpause_first_ms $((t_first - t_unpause))"; }
    if [ -n "$t_gone" ]; then
        mark "t $n unpause_gone_ms $((t_gone - t_unpause))"
        mark "shutdown $n $reason"
    else
        mark "shutdown $n timeout"
        xl list "$NAME" 2>&1 | tail -n1 | while IFS= read -r l; do echo "XFLAB:note $n xl list at timeout: $l"; done
    fi
    # A guest that died (reboot = Xen's verdict on an HVM triple fault, crash) or
    # hangs: its vCPU state (kept by on_*="preserve") is the first clue.
    case ${reason:-timeout} in
        1|3|timeout)
            { echo "# xenctx -a $domid"; xenctx -a "$domid" 0 2>&1 | head -n 60
              echo "# xen-hvmctx $domid"; xen-hvmctx "$domid" 2>&1 | head -n 120
            } >"$d/vcpuctx.out" 2>&1
            ;;
    esac
    xl destroy "$NAME" >"$d/destroy.out" 2>&1

    if [ -n "$spid" ]; then
        w=0
        while kill -0 $spid 2>/dev/null && [ $w -lt $((SCRIPT_WAIT * 10)) ]; do usleep 100000; w=$((w + 1)); done
        if kill -0 $spid 2>/dev/null; then
            kill $spid 2>/dev/null; sleep 1; kill -9 $spid 2>/dev/null
            wait $spid 2>/dev/null
            mark "script $n killed"
        else
            wait $spid; mark "script $n $?"
        fi
    fi

    usleep 100000
    kill $tailpid 2>/dev/null
    wait $relpid 2>/dev/null
    wait $tailpid 2>/dev/null
    # tail -F polls once a second: relay whatever it had not picked up yet.
    c=$(cat "$TMPD/relayed" 2>/dev/null || echo 0)
    [ -f "$log" ] && sed -n "$((c + 1)),\$p" "$log" | while IFS= read -r l; do echo "XFLAB:con $n $l"; done

    $DMESG -c >"$TMPD/dmesg.$n" 2>&1
    scan_faults $n "$TMPD/dmesg.$n" dom0
    scan_faults $n "$d/create.out" "xl create"
    scan_faults $n "$xllog" "xl log"
    sendfile $n console "$log"
    sendfile $n xllog "$xllog"
    [ -f "$d/script.out" ] && sendfile $n scriptout "$d/script.out"
    [ -f "$d/vcpuctx.out" ] && sendfile $n vcpuctx "$d/vcpuctx.out"
    if [ -d "$d/out" ]; then
        for f in "$d/out"/*; do
            [ -f "$f" ] && sendfile $n out "$f" "${f##*/}"
        done
    fi
    mark "end $n"
}

for n in $(cat "$SCEN/manifest"); do
    run_one "$n"
done
