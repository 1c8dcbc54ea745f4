#!/bin/sh
# Install ropekit's build/test/plot dependencies if any is missing (Debian/Ubuntu).
# Called by the Makefile before anything is built, so a fresh machine needs no manual step.
# As root: apt-get directly; otherwise via sudo (non-interactive). If neither is possible,
# stop and print the exact apt line.
set -eu
PKGS="libfftw3-dev libgsl-dev libcmocka-dev libopenblas-openmp-dev libjansson-dev pkg-config gnuplot-nox libopenmpi-dev openmpi-bin python3-numpy python3-pytest python3-pip fortunes"
APT_LINE="apt-get install -y --no-install-recommends $PKGS"

missing=""
for p in $PKGS; do
    # dpkg-query prints "install ok installed" only for a fully installed package.
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing="$missing $p"
done
# The pthread OpenBLAS wins the libblas alternatives over the OpenMP one (priority 100 vs 95)
# and deadlock-prone mixing of runtimes follows: refuse to run with it installed.
pthread_blas=""
st=$(dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null || true)
[ "$st" = "install ok installed" ] && pthread_blas=1

[ -z "$missing" ] && [ -z "$pthread_blas" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ropekit: missing packages:$missing; this is not a Debian-like system." >&2
    echo "ropekit: install the equivalents of: $PKGS" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ropekit: missing packages:$missing" >&2
    echo "ropekit: run as root (or with passwordless sudo):  sudo $APT_LINE" >&2
    [ -n "$pthread_blas" ] && echo "ropekit: and remove the pthread OpenBLAS:  sudo apt-get remove -y libopenblas0-pthread libopenblas-pthread-dev" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "ropekit: installing missing packages:$missing" >&2
    # A stale or absent package list makes install fail: update first, quietly.
    $SUDO apt-get update -qq >&2 || true
    $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi
if [ -n "$pthread_blas" ]; then
    echo "ropekit: removing the pthread OpenBLAS (the OpenMP build must be the one libblas)" >&2
    $SUDO apt-get remove -y -qq libopenblas0-pthread libopenblas-pthread-dev >&2 || true
fi
