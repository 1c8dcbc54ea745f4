#!/bin/sh
# `make install` into a temporary prefix, then a program built with pkg-config against it runs
# with no LD_LIBRARY_PATH (the .pc file's rpath), linked to the soname libropekit.so.0.
# Run by `make test` (tests/install_check.sh BUILD_DIR).
set -eu
build=${1:-build}
tmp=$(mktemp -d /tmp/rk_install_XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
${MAKE:-make} -s --no-print-directory BUILD="$build" install PREFIX="$tmp" >/dev/null
cat > "$tmp/hello.c" <<'C'
#include <ropekit.h>
#include <stdio.h>
int main(void)
{
    float q[4] = { 1, 0, 0, 1 }, o[4];
    rk_attn *p;
    rk_attn_config c = { .kind = RK_SOFTMAX, .n_q = 2, .n_kv = 2, .d = 2 };
    if (rk_attn_create(&p, &c) != RK_OK) { fprintf(stderr, "%s\n", rk_last_error()); return 1; }
    rk_mat m = rk_mat_view(q, 2, 2, 2), out = rk_mat_view(o, 2, 2, 2);
    int rc = rk_attn_execute(p, &m, &m, &m, &out, RK_ALL_KEYS);
    rk_attn_destroy(p);
    printf("ropekit %s %d\n", rk_version(), rc);
    return rc;
}
C
export PKG_CONFIG_PATH="$tmp/lib/pkgconfig"
cc -std=c11 -Wall -Wextra -Werror "$tmp/hello.c" $(pkg-config --cflags --libs ropekit) -o "$tmp/hello"
out=$(env -u LD_LIBRARY_PATH "$tmp/hello")
case "$out" in "ropekit "*" 0") ;; *) echo "install_check: the program printed '$out'" >&2; exit 1 ;; esac
readelf -d "$tmp/hello" | grep -q 'NEEDED.*libropekit\.so\.0\]' ||
    { echo "install_check: the program does not need libropekit.so.0" >&2; exit 1; }
[ "$(readlink "$tmp/lib/libropekit.so")" = libropekit.so.0 ] &&
    [ -f "$tmp/lib/$(readlink "$tmp/lib/libropekit.so.0")" ] ||
    { echo "install_check: the library links are not libropekit.so -> .so.0 -> the file" >&2; exit 1; }
[ -x "$tmp/bin/ropekit" ] && "$tmp/bin/ropekit" --version >/dev/null ||
    { echo "install_check: the installed ropekit does not run" >&2; exit 1; }
echo "install_check: make install into a prefix, pkg-config build, run without LD_LIBRARY_PATH: ok"
