#!/bin/sh
# The long-term decay figures: runs `ropekit decay` for each configuration into TSVs, then the
# gnuplot scripts beside this file into PNG and SVG.
#   plots/decay.sh [ROPEKIT [OUTDIR]]      (defaults: build/ropekit, out/decay)
# Outputs in OUTDIR:
#   fig2.{tsv,png,svg}      RoFormer Figure 2: B(dist), d = 128, base 10000, 0..256 (plots/decay.gp)
#   scores.{png,svg}        empirical scores vs the bound of eq. 37 (plots/decay_scores.gp), from
#                           scores_normal.tsv (q, k independent) and scores_same.tsv (q = k)
#   bases.{png,svg}         B for bases 100 .. 500000 and scalings of base 10000 (decay_bases.gp),
#                           from bases.tsv and scalings.tsv
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${1:-${ROPEKIT:-$root/build/ropekit}}
out=${2:-${OUTDIR:-$root/out/decay}}

command -v gnuplot >/dev/null 2>&1 || {
    echo "plots/decay.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
[ -x "$rk" ] || { echo "plots/decay.sh: $rk is not built (run make)" >&2; exit 1; }
mkdir -p "$out"

seed=1
draws=2000
"$rk" decay --draws 0 --step 0.25 --out "$out/fig2.tsv"
"$rk" decay --draws "$draws" --seed "$seed" --dist normal --out "$out/scores_normal.tsv"
"$rk" decay --draws "$draws" --seed "$seed" --dist same --out "$out/scores_same.tsv"
"$rk" decay --draws 0 --base 100,1000,10000,500000 --max-distance 16384 --out "$out/bases.tsv"
scalings=none,linear:4,ntk:4,yarn:4:4096
"$rk" decay --draws 0 --scaling "$scalings" --max-distance 16384 --out "$out/scalings.tsv"

# A caption from a TSV's '#' configuration line: version, d, curves, distances, draws.
caption() {
    sed -n '1{
        s/\[[^]]*\]//g
        s/^# ropekit decay \([^ ]*\) ([^)]*): dim=\([0-9]*\) curves=\([^ ]*\) min_distance=\([^ ]*\) step=\([^ ]*\) rows=[0-9]* max_distance=\([^ ]*\) draws=\([0-9]*\)\(.*\)$/ropekit decay \1: d = \2, curves \3, distance \4 .. \6 step \5, draws \7\8/
        s/ dist=\([a-z]*\) seed=\([0-9]*\) rng=mt19937/ (\1, seed \2)/
        p
    }' "$1"
}

gnuplot -e "in='$out/fig2.tsv'; out='$out/fig2'; caption='$(caption "$out/fig2.tsv")'" "$here/decay.gp"
gnuplot -e "iid='$out/scores_normal.tsv'; same='$out/scores_same.tsv'; out='$out/scores'; \
caption='$(caption "$out/scores_normal.tsv"); q = k: same seed'" "$here/decay_scores.gp"
gnuplot -e "bases='$out/bases.tsv'; scal='$out/scalings.tsv'; out='$out/bases'; \
caption='$(caption "$out/bases.tsv"); base 10000 with --scaling $scalings'" \
    "$here/decay_bases.gp"
echo "plots/decay.sh: wrote $out/fig2, scores, bases (.png, .svg)"
