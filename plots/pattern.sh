#!/bin/sh
# Attention patterns of the position encodings: runs `ropekit pattern` into OUTDIR/pattern.tsv,
# then plots/pattern.gp into PNG and SVG.
#   plots/pattern.sh [ropekit pattern options...]         (`make plots-pattern PLOT_ARGS=...`)
# Every option of `ropekit pattern` works; --encodings picks the panels (one per encoding, in
# the table's order, three per row). The figures are written as a set (plots/common.sh): a
# failed run leaves none of them.
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/pattern), PLOT_ONLY=1 to
# redraw from an existing OUTDIR/pattern.tsv.
# Outputs in OUTDIR: pattern.tsv, pattern.{png,svg} (weights), pattern_score.{png,svg} (scores),
# and the derived pattern.gp.in the figures read (encodings, titles, verdicts, ranges, and per
# encoding the number of distances whose weights or scores are <= 0, which a log axis cannot
# show: eq. 19's numerator is not positive).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/pattern}
tsv=$out/pattern.tsv
. "$here/common.sh"
plot_begin pattern "pattern pattern_score"

if [ "${PLOT_ONLY:-0}" != 1 ]; then
    [ -x "$rk" ] || plot_die "$rk is not built (run make)"
    for a in "$@"; do
        case $a in --out|--out=*) plot_die "--out is set by this script (OUTDIR=$out)" ;; esac
    done
    "$rk" pattern "$@" --out "$tsv"
fi
[ -s "$tsv" ] || plot_die "no table $tsv"

# A caption from the TSV's '#' configuration line.
caption=$(sed -n '1{
    s/^# ropekit pattern \([^ ]*\) ([^)]*): /ropekit pattern \1: /
    s/ rng=mt19937//
    s/ scale=1\/sqrt(d)//
    s/ encodings=.*$//
    p
}' "$tsv")

# The encodings of the table (in order), their titles, families and shift-test verdicts, the
# counts of values a log axis cannot show, and the axis ranges.
awk -F'\t' -v meta="$stage/pattern.gp.in" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
BEGIN {
    T["none"] = "no position"; T["sinusoidal"] = "sinusoidal (eq. 4)"
    T["t5"] = "T5 buckets (stand-in table)"; T["alibi"] = "ALiBi"; T["rope"] = "RoPE (eq. 16)"
    T["xpos"] = "xPos"; T["linear-rope-eq19"] = "FAVOR+ RoPE eq. 19"
    T["linear-rope-qk"] = "FAVOR+ RoPE before the map"; T["rpe-fft"] = "FAVOR+ FFT bias (ALiBi)"
}
/^# summary\t/ {
    for (i = 3; i <= NF; i++) if ($i ~ /^exactly_relative=/) V[$2] = substr($i, 18)
    next
}
/^#/ { next }
!h { h = 1; for (i = 1; i <= NF; i++) c[$i] = i; next }
{
    e = $c["encoding"]
    if (!(e in idx)) { idx[e] = ++n; E[n] = e; F[n] = $c["family"] }
    k = idx[e]; rows[k]++
    d = $c["distance"] + 0
    if (!hd || d < dmin) dmin = d; if (!hd || d > dmax) dmax = d; hd = 1
    if ($c["weight_q05"] + 0 <= 0) wq[k]++
    if ($c["mean_weight"] + 0 <= 0) wm[k]++
    if ($c["weight_median"] + 0 <= 0) wd[k]++
    if (F[k] == "linear") {
        if ($c["score_q05"] + 0 <= 0) sq[k]++
        if ($c["mean_score"] + 0 <= 0) sm[k]++
        if ($c["score_median"] + 0 <= 0) sd[k]++
        for (j = 1; j <= 4; j++) {
            x = $c[j == 1 ? "score_q05" : j == 2 ? "score_q95" : j == 3 ? "mean_score" : "score_median"] + 0
            if (x < 0) x = -x
            if (x > 0 && (!hl || x < llo)) llo = x; if (x > 0 && (!hl || x > lhi)) lhi = x; if (x > 0) hl = 1
        }
    } else {
        a = $c["score_q05"] + 0; b = $c["score_q95"] + 0
        if (!hs || a < slo) slo = a; if (!hs || b > shi) shi = b; hs = 1
    }
}
END {
    l = ""; for (i = 1; i <= n; i++) l = l (i > 1 ? " " : "") E[i]
    printf "encs = %s\nnenc = %d\n", q(l), n > meta
    for (i = 1; i <= n; i++) {
        printf "title_%d = %s\nfam_%d = %s\nverdict_%d = %s\n", i, q((E[i] in T) ? T[E[i]] : E[i]), i,
               q(F[i]), i, q((E[i] in V) ? V[E[i]] : "?") > meta
        printf "rows_%d = %d\nneg_wq05_%d = %d\nneg_wmean_%d = %d\nneg_wmed_%d = %d\n", i, rows[i],
               i, wq[i] + 0, i, wm[i] + 0, i, wd[i] + 0 > meta
        printf "neg_sq05_%d = %d\nneg_smean_%d = %d\nneg_smed_%d = %d\n", i, sq[i] + 0, i,
               sm[i] + 0, i, sd[i] + 0 > meta
    }
    if (!hd) { dmin = 0; dmax = 1 }
    if (dmax == dmin) dmax = dmin + 1
    if (!hs) { slo = 0; shi = 1 }
    if (shi == slo) { slo -= 0.5; shi += 0.5 }
    if (!hl) { llo = 1e-3; lhi = 1 }
    printf "dmin = %.6g\ndmax = %.6g\nslo = %.6g\nshi = %.6g\nllo = %.6g\nlhi = %.6g\n",
           dmin, dmax, slo - 0.05 * (shi - slo), shi + 0.05 * (shi - slo), llo / 2, lhi * 2 > meta
}' "$tsv"

plot_gnuplot "$here/pattern.gp" "in=$(gp_str "$tsv"); meta=$(gp_str "$stage/pattern.gp.in"); \
out=$(gp_str "$stage/pattern"); here=$(gp_str "$here"); caption=$(gp_str "$caption")"
plot_commit pattern.gp.in
echo "plots/pattern.sh: wrote $out/pattern.tsv, pattern.{png,svg}, pattern_score.{png,svg}"
