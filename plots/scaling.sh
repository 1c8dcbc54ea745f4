#!/bin/sh
# The sequence-length scaling figures: runs `ropekit scaling` into OUTDIR/scaling.tsv (the
# summary it prints goes to OUTDIR/summary.txt as well), then plots/scaling.gp into PNG and SVG.
#   plots/scaling.sh [ropekit scaling options]     (default options: --quick; not --out)
# Every option of `ropekit scaling` works (any subset of --variants and --masks, one length,
# ...): a panel without data says so. The figures are written as a set (plots/common.sh): a
# failed run leaves none of them.
# Environment: ROPEKIT (default build/ropekit), OUTDIR (default out/scaling), PLOT_ONLY=1 to
# redraw from an existing OUTDIR/scaling.tsv without running. --resume continues a table.
# Outputs in OUTDIR: scaling.tsv, summary.txt, time, memory, throughput, crossover (.png, .svg),
# and the derived fits.gp, fitlines.tsv, ratio.tsv the plots read.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rk=${ROPEKIT:-$root/build/ropekit}
out=${OUTDIR:-$root/out/scaling}
tsv=$out/scaling.tsv
. "$here/common.sh"
plot_begin scaling "time memory throughput crossover"

if [ "${PLOT_ONLY:-0}" != 1 ]; then
    [ -x "$rk" ] || plot_die "$rk is not built (run make)"
    [ $# -gt 0 ] || set -- --quick
    for a in "$@"; do
        case $a in --out|--out=*) plot_die "--out is set by this script (OUTDIR=$out)" ;; esac
    done
    "$rk" scaling "$@" --out "$tsv" > "$out/summary.txt" || {
        st=$?; cat "$out/summary.txt"; exit $st; }
    cat "$out/summary.txt"
fi
[ -s "$tsv" ] || plot_die "no table $tsv"

# From the table: the variant and mask lists and the legend titles (fits.gp), the fitted lines'
# end points (fitlines.tsv: variant mask n t), the time ratios to the exact reference with
# their CI-derived ranges (ratio.tsv: variant mask n ratio lo hi), and the axis ranges of the
# data with a flag per panel that has any (fits.gp), so that no panel depends on autoscaling.
awk -F'\t' -v fits="$stage/fits.gp" -v lines="$stage/fitlines.tsv" -v ratio="$stage/ratio.tsv" '
function q(s) { gsub(/"/, "", s); return "\"" s "\"" }
function upd(name, x) {   # running min and max of the positive values of one quantity
    if (x + 0 <= 0 || x == "nan" || x == "inf") return
    x += 0
    if (!(name in LO) || x < LO[name]) LO[name] = x
    if (!(name in HI) || x > HI[name]) HI[name] = x
}
function rng(name, pad, dlo, dhi,   a, b, c) {   # "lo:hi" on a log axis, padded by pad
    if (!(name in LO)) return sprintf("%s_lo = %g\n%s_hi = %g\n", name, dlo, name, dhi)
    a = LO[name] / pad; b = HI[name] * pad
    if (b / a < 10) { c = sqrt(a * b); a = c / sqrt(10); b = c * sqrt(10) }
    return sprintf("%s_lo = %.6g\n%s_hi = %.6g\n", name, a, name, b)
}
/^# summary\texponent\t/ {
    v = $3; m = $4; key = v SUBSEP m
    if ($5 != "nan") {
        title[key] = ($6 != "nan") ? sprintf("%s: b = %.2f [%.2f, %.2f]", v, $5, $6, $7) \
                                   : sprintf("%s: b = %.2f", v, $5)
        t1 = exp($8) * $9 ^ $5; t2 = exp($8) * $10 ^ $5
        nl++; L[nl] = sprintf("%s\t%s\t%s\t%.6g\n%s\t%s\t%s\t%.6g\n\n", v, m, $9, t1, v, m, $10, t2)
        upd("t", t1); upd("t", t2)
    }
    next
}
/^# summary\tcrossover\t/ {
    v = $3; m = $4; key = v SUBSEP m; ref[key] = $5; xc[key] = $6
    ct[key] = ($6 != "nan") ? sprintf("%s / %s: faster from n = %.0f", v, $5, $6) \
                            : sprintf("%s / %s: no crossover measured", v, $5)
    next
}
/^#/ { next }
!header { header = 1; for (i = 1; i <= NF; i++) col[$i] = i; next }
{
    v = $col["variant"]; m = $col["mask"]
    if (!(v in seenv)) { seenv[v] = ++nv; V[nv] = v }
    if (!(m in seenm)) { seenm[m] = ++nm; M[nm] = m }
    if ($col["status"] == "ok") {
        k = v SUBSEP m SUBSEP $col["n"]
        med[k] = $col["median_s"]; lo[k] = $col["ci_lo_s"]; hi[k] = $col["ci_hi_s"]
        ns[v SUBSEP m] = ns[v SUBSEP m] " " $col["n"]
        if (!($col["n"] in seenn)) { seenn[$col["n"]] = 1; NS[++nn] = $col["n"] + 0 }
        upd("n", $col["n"]); upd("t", $col["median_s"]); upd("t", $col["ci_lo_s"])
        upd("t", $col["ci_hi_s"]); upd("tp", $col["tokens_per_s"]); hasd[m] = 1
        if (m == M[1]) { upd("mem", $col["plan_bytes"]); upd("rss", $col["rss_peak_kb"]) }
    }
}
END {
    vl = ""; for (i = 1; i <= nv; i++) vl = vl (i > 1 ? " " : "") V[i]
    ml = ""; for (i = 1; i <= nm; i++) ml = ml (i > 1 ? " " : "") M[i]
    printf "variants = %s\nmasks = %s\nnvar = %d\nnmask = %d\n", q(vl), q(ml), nv, nm > fits
    for (i = 1; i <= nv; i++) for (j = 1; j <= nm; j++) {
        key = V[i] SUBSEP M[j]
        printf "t_%s_%d = %s\n", M[j], i, q((key in title) ? title[key] : V[i]) > fits
        printf "c_%s_%d = %s\n", M[j], i, q((key in ct) ? ct[key] : "") > fits
        printf "x_%s_%d = %s\n", M[j], i, ((key in xc) && xc[key] != "nan") ? xc[key] : "NaN" > fits
        if (!(key in ref)) continue
        split(ns[key], list, " ")
        for (t in list) {
            a = V[i] SUBSEP M[j] SUBSEP list[t]; b = ref[key] SUBSEP M[j] SUBSEP list[t]
            if ((b in med) && med[b] > 0 && lo[b] > 0 && (a in med)) {
                printf "%s\t%s\t%s\t%.6g\t%.6g\t%.6g\n", V[i], M[j], list[t], med[a] / med[b],
                       lo[a] / hi[b], hi[a] / lo[b] > ratio
                upd("r", med[a] / med[b]); upd("r", lo[a] / hi[b]); upd("r", hi[a] / lo[b])
                hasr[M[j]] = 1
            }
        }
    }
    for (j = 1; j <= nm; j++)
        printf "has_t_%s = %d\nhas_r_%s = %d\n", M[j], (M[j] in hasd), M[j], (M[j] in hasr) > fits
    printf "has_mem = %d\nhas_rss = %d\n", ("mem" in LO), ("rss" in LO) > fits
    printf "%s%s%s%s%s", rng("t", 1.6, 1e-4, 1), rng("tp", 1.6, 1e3, 1e7), rng("mem", 1.6, 1e3, 1e7),
           rng("rss", 1.6, 1e3, 1e7), rng("r", 1.6, 0.1, 10) > fits
    if ("n" in LO) printf "n_lo = %.6g\nn_hi = %.6g\n", LO["n"] / 1.3, HI["n"] * 1.3 > fits
    else printf "n_lo = 100\nn_hi = 10000\n" > fits
    # x tics at the measured lengths, every k-th so that there are at most 10
    for (i = 2; i <= nn; i++) { x = NS[i]; for (j = i - 1; j >= 1 && NS[j] > x; j--) NS[j + 1] = NS[j]; NS[j + 1] = x }
    k = int((nn + 9) / 10); tl = ""
    for (i = 1; i <= nn; i += k) tl = tl (tl == "" ? "" : ", ") NS[i]
    printf "nvtics = \"%s\"\n", (tl == "" ? "auto" : "(" tl ")") > fits
    printf "variant\tmask\tn\tt\n" > lines
    for (i = 1; i <= nl; i++) printf "%s", L[i] > lines
    printf "" > ratio
}' "$tsv"
# ratio rows in length order, a blank line between (variant, mask) groups (for the lines)
{ printf 'variant\tmask\tn\tratio\tlo\thi\n'
  sort -t '	' -k1,1 -k2,2 -k3,3n "$stage/ratio.tsv" |
      awk -F'\t' 'NF && (p != $1 FS $2) { if (p != "") print ""; p = $1 FS $2 } NF { print }'
} > "$stage/ratio.tsv.tmp"
mv "$stage/ratio.tsv.tmp" "$stage/ratio.tsv"

caption=$(sed -n '1s/^# //p' "$tsv" | cut -c1-220)
plot_gnuplot "$here/scaling.gp" "in=$(gp_str "$tsv"); fits=$(gp_str "$stage/fits.gp"); \
lines=$(gp_str "$stage/fitlines.tsv"); ratio=$(gp_str "$stage/ratio.tsv"); out=$(gp_str "$stage"); \
here=$(gp_str "$here"); caption=$(gp_str "$caption")"
plot_commit fits.gp fitlines.tsv ratio.tsv
echo "plots/scaling.sh: wrote $out/time, memory, throughput, crossover (.png, .svg)"
