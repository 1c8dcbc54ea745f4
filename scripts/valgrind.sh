#!/bin/sh
# make valgrind: every test binary of the normal build (build/tests/test_*) under valgrind memcheck,
# and with them every ropekit process they start (--trace-children=yes), each process logging to
# its own file in build/valgrind/ so the binary's stderr stays what the tests check.
#
# Fails (exit 1) if a test binary fails or reports an error (--error-exitcode=1), or if any log
# shows an invalid access, a use of uninitialised memory, a bad free, or memory "definitely" or
# "indirectly" lost. "Possibly lost" and "still reachable" are not errors: libgomp's thread pool
# and OpenBLAS's buffers live until exit by design (tests/valgrind.supp names that noise; it may
# hold third-party entries only). Nothing is skipped: every test binary runs, or the script says
# which one did not and fails.
#
#   VALGRIND_CHILDREN=no   do not follow the ropekit processes the tests start (much faster)
#   VALGRIND_TESTS="test_npy test_cli"   only these binaries
set -eu
cd "$(dirname "$0")/.."
BUILD=build
LOG=$(pwd)/$BUILD/valgrind   # absolute: the tests run ropekit in other directories
CHILDREN=${VALGRIND_CHILDREN:-yes}

if ! command -v valgrind >/dev/null 2>&1; then
    APT_LINE="apt-get install -y --no-install-recommends valgrind"
    if [ "$(id -u)" = 0 ]; then SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
    else
        echo "valgrind: not installed; run as root (or with passwordless sudo):  sudo $APT_LINE" >&2
        exit 1
    fi
    echo "valgrind: installing valgrind" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2 || true
    $SUDO $APT_LINE -qq >&2
fi

if [ -n "${VALGRIND_TESTS:-}" ]; then
    TESTS=""
    for t in $VALGRIND_TESTS; do TESTS="$TESTS $BUILD/tests/$t"; done
else
    TESTS=$(ls tests/test_*.c | sed "s#^tests/\(.*\)\.c\$#$BUILD/tests/\1#")
fi
# shellcheck disable=SC2086
make -s BUILD=$BUILD all $TESTS

rm -rf "$LOG"
mkdir -p "$LOG"
# The processes log into a world-writable temporary directory first, then the logs are moved to
# $LOG: a test runs ropekit as user nobody (file permissions as root; tests/run_cli.c sets
# RK_RUN_AS for it, which goes into the log's name), and some file systems let only root create
# files under the build tree.
RUNLOG=$(mktemp -d "${TMPDIR:-/tmp}/ropekit-valgrind-XXXXXX")
chmod 0777 "$RUNLOG"
export RK_RUN_AS=''

trap 'rm -rf "$RUNLOG"' EXIT
VG="valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --suppressions=$(pwd)/tests/valgrind.supp --vgdb=no
    --trace-children=$CHILDREN"
# Error lines of memcheck (any of them in any log is a failure).
ERRORS='Invalid (read|write|free)|uninitialised|Conditional jump|Mismatched free|definitely lost in|indirectly lost in|overlap|Syscall param|Process terminating|unhandled instruction'

status=0
total=0
for t in $TESTS; do
    name=$(basename "$t")
    total=$((total + 1))
    if [ ! -x "$t" ]; then
        echo "!! $name: not built" >&2
        status=1
        continue
    fi
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086
    $VG --log-file="$RUNLOG/$name.%p%q{RK_RUN_AS}.log" "$t" > "$LOG/$name.out" 2>&1 || rc=$?
    secs=$(( $(date +%s) - start ))
    mv "$RUNLOG/$name".*.log "$LOG/" 2>/dev/null || true
    bad=$(grep -lE "$ERRORS" "$LOG/$name".*.log 2>/dev/null || true)
    nproc_logs=$(ls "$LOG/$name".*.log 2>/dev/null | wc -l)
    if [ "$rc" != 0 ] || [ -n "$bad" ]; then
        status=1
        echo "!! $name: exit $rc after ${secs}s ($nproc_logs processes)" >&2
        grep -E '^\[  (FAILED|ERROR)|^ERROR' "$LOG/$name.out" | head -20 >&2 || true
        for f in $bad; do
            echo "-- $f" >&2
            head -60 "$f" >&2
        done
    else
        echo "ok $name (${secs}s, $nproc_logs processes)" >&2
    fi
done
if [ "$status" = 0 ]; then
    echo "valgrind: $total test binaries clean (logs: $LOG)" >&2
else
    echo "valgrind: failures above (logs: $LOG)" >&2
fi
exit $status
