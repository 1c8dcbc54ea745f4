#!/bin/sh
# Attention patterns of the position encodings: runs `ropekit pattern` into OUTDIR/pattern.tsv,
# then plots/pattern.gp into PNG and SVG.
#   plots/pattern.sh [ropekit pattern options...]         (`make plots-pattern PLOT_ARGS=...`)
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/pattern).
# Outputs in OUTDIR: pattern.tsv, pattern.{png,svg} (weights), pattern_score.{png,svg} (scores).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/pattern}

command -v gnuplot >/dev/null 2>&1 || {
    echo "plots/pattern.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
[ -x "$rk" ] || { echo "plots/pattern.sh: $rk is not built (run make)" >&2; exit 1; }
mkdir -p "$out"
"$rk" pattern "$@" --out "$out/pattern.tsv"

# A caption from the TSV's '#' configuration line.
caption=$(sed -n '1{
    s/^# ropekit pattern \([^ ]*\) ([^)]*): /ropekit pattern \1: /
    s/ rng=mt19937//
    s/ scale=1\/sqrt(d)//
    s/ encodings=.*$//
    p
}' "$out/pattern.tsv")
gnuplot -e "in='$out/pattern.tsv'; out='$out/pattern'; caption='$caption'" "$here/pattern.gp"
echo "plots/pattern.sh: wrote $out/pattern.tsv, pattern.{png,svg}, pattern_score.{png,svg}"
