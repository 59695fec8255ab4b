# xenfront nested lab: shell helpers for Dom0 scenario scripts (busybox sh, `set -u`
# safe). Shipped as /lab/lib.sh with every suite; the runner (lab/dom0/runner.sh)
# sources it before a scenario's script and exports its path as $XF_LIB, so a child
# shell can have the helpers too: sh -c '. "$XF_LIB"; wait_console ready'.
# See docs/lab.md, "Dom0 script environment".
#
# Waits poll every 20 ms, at most SECS*50 times: about SECS seconds on an idle lab,
# longer when Dom0 is slow (each poll runs a command). On timeout they print
# "timeout waiting for ..." to stderr, then
#   wait_console, wait_xenstore       exit the script with status 3;
#   xf_poll, wait_file, wait_socket   return 1 (the caller decides).

# xf_poll SECS CMD [ARG...]: run CMD until it succeeds; 1 if it never did.
xf_poll() {
    local _xf_n=$(($1 * 50))
    shift
    until "$@"; do
        _xf_n=$((_xf_n - 1))
        [ "$_xf_n" -gt 0 ] || return 1
        usleep 20000
    done
}

# wait_console ERE [SECS=90]: until the guest console log ($CONSOLE_LOG) has a line
# matching ERE (grep -E; the log's lines end in \r).
wait_console() {
    xf_poll "${2:-90}" grep -qE -e "$1" "$CONSOLE_LOG" 2>/dev/null && return 0
    echo "timeout waiting for $1" >&2
    exit 3
}

# console_line ERE: the first console line matching ERE, without its \r.
console_line() {
    grep -m1 -E -e "$1" "$CONSOLE_LOG" 2>/dev/null | tr -d '\r'
}

# wait_file FILE ERE [SECS=90]: until FILE has a line matching ERE.
wait_file() {
    xf_poll "${3:-90}" grep -qE -e "$2" "$1" 2>/dev/null && return 0
    echo "timeout waiting for $2 in $1" >&2
    return 1
}

# wait_xenstore PATH [SECS=90]: until the XenStore key PATH exists; prints its value.
wait_xenstore() {
    xf_poll "${2:-90}" xenstore-read "$1" 2>/dev/null && return 0
    echo "timeout waiting for XenStore key $1" >&2
    exit 3
}

# wait_socket PATH [SECS=10]: until PATH is a socket (e.g. vchan-socket-proxy's).
wait_socket() {
    xf_poll "${2:-10}" test -S "$1" && return 0
    echo "timeout waiting for socket $1" >&2
    return 1
}

# rand_hex N: N random bytes as 2N lowercase hex digits.
rand_hex() {
    head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}
