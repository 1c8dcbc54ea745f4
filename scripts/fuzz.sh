#!/bin/sh
# make fuzz: libFuzzer targets for the .npy reader (fuzz_npy) and the command line of every
# subcommand (fuzz_cli), built with clang -fsanitize=fuzzer,address,undefined against the library
# and driver sources compiled with the same flags into build/fuzz (out of tree, apart from the
# gcc builds). Each target first replays its kept findings (tests/fuzz/regressions/<target>/),
# then fuzzes for FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/<target>/; new inputs go to
# build/fuzz/corpus/<target>/, never into tests/).
#
#   FUZZ_SECONDS=60      time per target (-max_total_time)
#   FUZZ_TIMEOUT=20      seconds one input may take before it counts as a hang (-timeout)
#   FUZZ_TARGETS="npy cli"  which targets
#   FUZZ_ARGS=...        more libFuzzer flags (e.g. -seed=1 -jobs=2)
#
# The harnesses change into their own temporary directory: every path given to them is absolute.
# Any finding (crash, sanitizer report, leak, hang, out-of-memory, a broken invariant) stops that
# target; its input is saved as tests/fuzz/regressions/<target>/<kind>-<sha1> (commit it with the
# fix: it is replayed on every run) and the script exits 1 after the other targets ran.
# clang, its sanitizer/libFuzzer runtime and clang's OpenMP runtime are installed if missing
# (apt-get as root or via sudo -n, else the apt line is printed), like scripts/ensure-deps.sh.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-20}
FUZZ_TARGETS=${FUZZ_TARGETS:-"npy cli"}
FUZZ_ARGS=${FUZZ_ARGS:-}
CLANG=${CLANG:-clang}
OUT=$ROOT/build/fuzz

# ---- dependencies ---------------------------------------------------------------------------
sh scripts/ensure-deps.sh
PKGS="clang libclang-rt-14-dev libomp-14-dev"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
    APT_LINE="apt-get install -y --no-install-recommends$missing"
    if [ "$(id -u)" = 0 ]; then SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
    else
        echo "fuzz: missing packages:$missing" >&2
        echo "fuzz: run as root (or with passwordless sudo):  sudo $APT_LINE" >&2
        exit 1
    fi
    echo "fuzz: installing missing packages:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2 || true
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi
command -v "$CLANG" >/dev/null 2>&1 || { echo "fuzz: $CLANG not found" >&2; exit 1; }

# ---- build ----------------------------------------------------------------------------------
LIBS="fftw3 fftw3f gsl openblas jansson"
PKG_CFLAGS=$(pkg-config --cflags $LIBS)
PKG_LIBS=$(pkg-config --libs $LIBS | sed 's/-lgslcblas//')
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
WARN="-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-format-nonliteral -Wno-pass-failed"
CFLAGS="-std=c11 -O1 -g -fno-omit-frame-pointer -fopenmp $SAN $WARN $PKG_CFLAGS"
CPPFLAGS="-Ilib -Iexperiments -D_POSIX_C_SOURCE=200809L"
mkdir -p "$OUT/obj"

# Rebuild everything when any source or header is newer than the last build (a full build is
# about a minute; partial rebuilds would need the header dependencies).
SRC_LIB=$(ls lib/*.c model/*.c)
SRC_EXP=$(ls experiments/*.c | grep -v '^experiments/ropekit\.c$')
stale=1
if [ -f "$OUT/stamp" ]; then
    stale=0
    for f in lib/*.c lib/*.h model/*.c model/*.h experiments/*.c experiments/*.h tests/fuzz/*.c scripts/fuzz.sh; do
        [ "$f" -nt "$OUT/stamp" ] && { stale=1; break; }
    done
fi
if [ "$stale" = 1 ]; then
    echo "fuzz: building the sanitizer + coverage objects in $OUT" >&2
    rm -f "$OUT"/obj/*.o
    # Library and drivers: -fsanitize=fuzzer-no-link (coverage for the fuzzer, no main); their
    # warnings are shown but do not stop the build (they are gcc -Werror clean already).
    # shellcheck disable=SC2086
    printf '%s\n' $SRC_LIB $SRC_EXP | xargs -P "$(nproc)" -I{} sh -c \
        'o='"$OUT"'/obj/$(echo {} | tr / _ | sed "s/\.c$/.o/"); '"$CLANG $CPPFLAGS $CFLAGS"' -fsanitize=fuzzer-no-link -c {} -o $o' \
        || { echo "fuzz: build failed" >&2; exit 1; }
    for t in npy cli; do
        # shellcheck disable=SC2086
        $CLANG $CPPFLAGS $CFLAGS -Werror -fsanitize=fuzzer -c tests/fuzz/fuzz_$t.c -o "$OUT/obj/fuzz_$t.o"
    done
    LIB_OBJ=$(for f in $SRC_LIB; do echo "$OUT/obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')"; done)
    EXP_OBJ=$(for f in $SRC_EXP; do echo "$OUT/obj/$(echo "$f" | tr / _ | sed 's/\.c$/.o/')"; done)
    # shellcheck disable=SC2086
    $CLANG -fsanitize=fuzzer $SAN -fopenmp "$OUT/obj/fuzz_npy.o" $LIB_OBJ $PKG_LIBS -lm -o "$OUT/fuzz_npy"
    # shellcheck disable=SC2086
    $CLANG -fsanitize=fuzzer $SAN -fopenmp "$OUT/obj/fuzz_cli.o" $EXP_OBJ $LIB_OBJ $PKG_LIBS -lm -o "$OUT/fuzz_cli"
    touch "$OUT/stamp"
fi

# Dictionary of the command line: every option name and every @fixture token of the harness.
{
    grep -ho '{ "[a-z][a-z0-9-]*",' experiments/cmd_*.c experiments/cli.h | sed 's/{ "\(.*\)",/"--\1"/'
    grep -o '"@[a-z0-9]*"' tests/fuzz/fuzz_cli.c
    echo '"%fail="'
    echo '"--help"'
} | sort -u > "$OUT/cli.dict"

# ---- run ------------------------------------------------------------------------------------
# allocator_may_return_null + max_allocation_size_mb: an absurd allocation returns NULL (the
# ENOMEM path runs) instead of ending the process; libFuzzer's own limit is set above it.
export ASAN_OPTIONS="allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=1
status=0
for t in $FUZZ_TARGETS; do
    bin="$OUT/fuzz_$t"
    [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; status=1; continue; }
    reg="$ROOT/tests/fuzz/regressions/$t"
    work="$OUT/corpus/$t"
    mkdir -p "$reg" "$work"
    flags="-timeout=$FUZZ_TIMEOUT -rss_limit_mb=2048 -malloc_limit_mb=4096 -artifact_prefix=$reg/ -print_final_stats=1"
    [ "$t" = cli ] && flags="$flags -dict=$OUT/cli.dict -max_len=4096"
    [ "$t" = npy ] && flags="$flags -max_len=65536"
    # 1. the kept findings, one run each
    if [ -n "$(ls -A "$reg" 2>/dev/null)" ]; then
        echo "== fuzz_$t: replaying $(ls "$reg" | wc -l) kept finding(s) from $reg" >&2
        # shellcheck disable=SC2086
        if ! "$bin" $flags -artifact_prefix="$OUT/replay-$t-" "$reg"/* > "$OUT/replay-$t.log" 2>&1; then
            tail -40 "$OUT/replay-$t.log" >&2
            echo "!! fuzz_$t: a kept finding fails again (log: $OUT/replay-$t.log)" >&2
            status=1
            continue
        fi
    fi
    # 2. fuzzing
    echo "== fuzz_$t: $FUZZ_SECONDS s from $work and tests/fuzz/corpus/$t" >&2
    log="$OUT/fuzz-$t.log"
    # shellcheck disable=SC2086
    if "$bin" $flags -max_total_time="$FUZZ_SECONDS" $FUZZ_ARGS "$work" "$ROOT/tests/fuzz/corpus/$t" > "$log" 2>&1; then
        grep -E '^(#[0-9]+.*(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" >&2 || true
        echo "ok fuzz_$t" >&2
    else
        tail -60 "$log" >&2
        echo "!! fuzz_$t: finding saved in $reg/ (log: $log)" >&2
        status=1
    fi
done
exit $status
